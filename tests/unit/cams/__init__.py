"""Unit tests of exporter.cams: signing, rate limits, answer parsing and checks, paging."""
