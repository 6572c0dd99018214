"""The shared test kit of `tests/` and `bench/`: processes on port 0, waits, the official-SDK
oracle, config builders and reference collectors."""
