"""The test suite: unit/, e2e/ and artifacts/ (see docs/testing.md), helpers in kit/."""
