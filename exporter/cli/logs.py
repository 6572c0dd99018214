"""Logging setup: `--log.level` and `--log.format logfmt|json`, one line per event.

Context travels as fields, not inside the message: pass `extra={"account": ..., "space": ...,
"template": ..., "language": ...}` (any of `FIELDS`) and the formatters write them as logfmt
pairs or JSON keys, so a log pipeline can filter by account or template. An error logged with
an exception keeps its traceback (`logger.exception(...)`): in logfmt as the quoted `traceback`
value with its line breaks escaped, in JSON as the `traceback` key; either way one line.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
# The context fields, in the order logfmt writes them.
FIELDS = ("account", "space", "template", "language", "action", "kind", "code")


def _logfmt_value(value: str) -> str:
    if value and all(c.isalnum() or c in "-._/:@" for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _level(record: logging.LogRecord) -> str:
    return record.levelname.lower().replace("warning", "warn")


def _fields(record: logging.LogRecord) -> list[tuple[str, str]]:
    return [
        (name, str(getattr(record, name)))
        for name in FIELDS
        if getattr(record, name, None) is not None
    ]


def _traceback(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*record.exc_info)).rstrip()


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=... msg="..." account=...`, like the Go exporters' output."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        message = " ".join(record.getMessage().splitlines())
        parts = [
            f"ts={ts[:-4]}Z",
            f"level={_level(record)}",
            f"logger={record.name}",
            f"msg={_logfmt_value(message)}",
        ]
        parts += [f"{name}={_logfmt_value(value)}" for name, value in _fields(record)]
        trace = _traceback(record)
        if trace is not None:
            error = record.exc_info[1] if record.exc_info else None
            parts.append(f"error={_logfmt_value(repr(error))}")
            parts.append(f"traceback={json.dumps(trace, ensure_ascii=False)}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": _level(record),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(_fields(record))
        trace = _traceback(record)
        if trace is not None:
            error = record.exc_info[1] if record.exc_info else None
            payload["error"] = repr(error)
            payload["traceback"] = trace
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
