"""The test suite: end-to-end over real HTTP, plus unit and property tests of each module."""
