"""Checking a domain: pure evaluation (evaluate, coverage, render) and the shell that feeds it.

``evaluate``, ``coverage`` and ``render`` are pure (no I/O, no clock; ``tests/test_purity.py``);
``run`` runs the probes for one domain or many, ``pool`` shards bulk checks over worker
processes, ``history`` saves a check to the store in the one shape the rollout reads back.
"""
