"""The in-process exporter's log, captured as records and as the lines `--log.format logfmt`
writes, for tests that check what was logged (once, at which level, with which fields)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator

from exporter.cli.logs import LogfmtFormatter
from tests.kit.waits import wait_until


class LogLines(logging.Handler):
    """Every record handled, kept, and formatted as logfmt."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(LogfmtFormatter())
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._guard:
            self.lines.append(line)
            self.records.append(record)

    def mark(self) -> int:
        with self._guard:
            return len(self.lines)

    def since(self, mark: int) -> list[str]:
        with self._guard:
            return list(self.lines[mark:])

    def wait_for(self, pattern: str, mark: int, timeout: float = 20.0) -> str:
        """The first line after `mark` matching `pattern`, waiting for it to be logged."""
        regex = re.compile(pattern)

        def found() -> str | None:
            return next((line for line in self.since(mark) if regex.search(line)), None)

        return wait_until(found, timeout, f"a log line matching {pattern!r}")

    def kinds(self, level: int = logging.WARNING) -> list[tuple[str, str, str]]:
        """(kind, template, language) of every record at `level` or above with a `kind` field."""
        with self._guard:
            return [
                (getattr(r, "kind", ""), getattr(r, "template", ""), getattr(r, "language", ""))
                for r in self.records
                if r.levelno >= level and getattr(r, "kind", None)
            ]


@contextlib.contextmanager
def captured_logs(debug: bool = True) -> Iterator[LogLines]:
    """Collect the log lines: with `debug`, debug and up for the exporter's own loggers and info
    for others (the levels are set for the block); without, what the levels in force let
    through (warn and up by default), at no cost for the records they drop."""
    handler = LogLines()
    root = logging.getLogger()
    ours = logging.getLogger("cams_exporter")
    levels = (root.level, ours.level)
    root.addHandler(handler)
    if debug:
        root.setLevel(logging.INFO)
        ours.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
