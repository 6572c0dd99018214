"""Benchmarks of the exporter against the simulator (issue 6). Entry point: bench/run.py."""
