"""Tests of what ships beside the code: rules (promtool), dashboards, deploy/, the Dockerfile,
the benchmarks' smoke run (`pytest -m artifacts`)."""
