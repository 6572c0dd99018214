"""Unit tests: one folder per package of `exporter` (and the simulator); no sockets, no child
processes (tests/unit/conftest.py refuses both), the whole folder in seconds: `pytest -m unit`."""
