"""Benchmarks: each prints its figures (``make bench``); none asserts a time."""
