"""TLS-RPT (RFC 8460): the report schema and model, parsing, summaries, exports and advice.

Pure core: no I/O, no clock (``tests/test_purity.py`` proves it for every module here).
"""
