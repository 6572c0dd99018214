"""Logging setup: `--log.level` and `--log.format logfmt|json`, one line per event."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def _logfmt_value(value: str) -> str:
    if value and all(c.isalnum() or c in "-._/:@" for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=... msg="..."`, like the Go exporters' default output."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        message = " ".join(record.getMessage().splitlines())
        line = (
            f"ts={ts[:-4]}Z level={record.levelname.lower().replace('warning', 'warn')} "
            f"logger={record.name} msg={_logfmt_value(message)}"
        )
        if record.exc_info and record.levelno >= logging.ERROR:
            line += f" error={_logfmt_value(repr(record.exc_info[1]))}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower().replace("warning", "warn"),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.levelno >= logging.ERROR:
            payload["error"] = repr(record.exc_info[1])
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Route every logger to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # urllib3 logs full request lines at debug; keep it quiet unless something breaks.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
