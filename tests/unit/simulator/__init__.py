"""Unit tests of cams_simulator that need no socket: its options and command line."""
