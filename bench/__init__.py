"""Benchmarks: each module prints ratios against a reference measured in the same run."""
