"""Benchmarks (not tests): they print ratios against a baseline measured in the same run."""
