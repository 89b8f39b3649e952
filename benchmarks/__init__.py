"""Benchmarks for issue 6: `make bench` (peers), `make bench-slow` (slow clients), `make bench-soak`."""
