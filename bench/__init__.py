"""Benchmarks: measured figures, never asserted in tests."""
