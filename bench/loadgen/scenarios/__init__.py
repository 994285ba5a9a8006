"""Benchmark scenarios, one module per family."""
