"""Unit tests of exporter.config: parsing, rules, the YAML loader, fuzzing in process."""
