"""Unit tests of exporter.web that need no socket: protocol, negotiation, config, listen, auth."""
