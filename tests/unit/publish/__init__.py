"""Unit tests of exporter.publish: the exposition writer, the GC policy, process metrics."""
