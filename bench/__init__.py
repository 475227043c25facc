"""Benchmarks: the application path against a bare proxy (`harness`), and the catalog and
licence benchmarks of their own issues when present. `python -m bench --help`."""
