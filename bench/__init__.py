"""Benchmarks: `.venv/bin/python -m bench.<name>` writes JSON (+ PNG) under bench/results/.

Figures are measurements for people to read, never asserted in tests.
"""
