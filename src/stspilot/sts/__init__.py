"""MTA-STS itself (RFC 8461): host and domain names, the TXT records, the policy file, MX matching.

Pure core: no I/O, no clock (``tests/test_purity.py`` proves it for every module here).
"""
