"""Benchmarks, one command each, run from the repository root: ``python -m bench.bench_<name>``."""
