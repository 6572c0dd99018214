"""End-to-end tests: real HTTP on 127.0.0.1, child processes, the official SDK over the
simulator, a real Prometheus (`pytest -m e2e`)."""
