"""Benchmarks (``lor bench NAME``): each prints one JSON object as its last line of output."""
