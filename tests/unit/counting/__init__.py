"""Unit tests of exporter.counting: the counter state and its properties."""
