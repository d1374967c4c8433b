"""Benchmarks: commands that print figures (make bench-tickets), not tests."""
