"""Publish: the hands. DNS records and the policy file written in the never-orphan order,
verified at every authoritative server, journaled so a crash resumes (docs/publish.md).

``plan`` is pure (no I/O, no clock: ``tests/test_purity.py``); the rest acts on DNS and files.
"""
