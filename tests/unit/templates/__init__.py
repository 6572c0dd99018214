"""Unit tests of exporter.templates: sharding."""
