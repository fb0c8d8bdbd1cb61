"""The rollout pilot: evidence, the enforce gate, stage assessment, runbooks, generate, render.

Pure core: no I/O, no clock (``tests/test_purity.py`` proves it for every module here).
"""
