"""Benchmarks; `python -m bench.<name>` runs one (see each module's docstring)."""
