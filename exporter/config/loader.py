"""Reading a config file: YAML in, `${VAR}` expanded, checked, a `Config` or one ConfigError.

`parse_config` reads the text with a safe YAML loader that keeps dates as text (so a bad date
is reported at its key) and refuses duplicate keys (naming the key and both lines), expands
`${VAR}` / `${VAR:-default}`, checks every key and value, and either returns a `Config` or
raises one `ConfigError` that lists *all* the problems it found, each as `key.path: message`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import TextIO

import yaml
from yaml.reader import ReaderError

from exporter.config import yamlsafe
from exporter.config.env import expand_tree
from exporter.config.schema import Config, ConfigError
from exporter.config.sections import ConfigChecker


def _yaml_problem(exc: Exception, text: str, source: str) -> str:
    """One readable line for a YAML error, with its position (never the offending text)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context:
            what = f"{exc.problem} ({exc.context})"
        where = ""
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
            lines = text.splitlines()
            if mark.line < len(lines) and "${" in lines[mark.line]:
                what += "; inside {...} or [...] write ${...} values in quotes"
        return f"{source}: invalid YAML{where}: {what}"
    if isinstance(exc, ReaderError):
        return f"{source}: invalid YAML at character {exc.position}: {exc.reason}"
    if isinstance(exc, RecursionError):
        return f"{source}: invalid YAML: nested too deeply"
    if isinstance(exc, ValueError):  # e.g. an impossible date such as 2026-13-45
        return f"{source}: invalid YAML value: {exc}"
    return f"{source}: invalid YAML: {type(exc).__name__}"


def parse_config(
    text: str, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """The validated `Config` in `text`; ConfigError listing every problem otherwise.

    `env` (default `os.environ`) feeds `${VAR}` expansion; `source` names the document in problems
    that belong to no key (YAML syntax errors, an empty document).
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    try:
        tree = yamlsafe.load(text)
    except Exception as exc:  # any YAML failure becomes one readable line, never a traceback
        raise ConfigError(_yaml_problem(exc, text, source)) from None
    try:
        expanded = expand_tree(tree, environment, {})
        checker = ConfigChecker(source, dt.datetime.now(dt.UTC).date())
        config = checker.config(expanded)
    except RecursionError:
        raise ConfigError(f"{source}: the document is nested too deeply") from None
    if checker.problems:
        raise ConfigError(checker.problems)
    return config


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """`parse_config` on the file at `path`; an unreadable file is a one-line ConfigError."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    return parse_config(text, env, source=path)


def load_or_report(path: str, err: TextIO, env: Mapping[str, str] | None = None) -> Config | None:
    """`load_config`, or None after printing one line per problem to `err` (for commands that
    then exit 2)."""
    try:
        return load_config(path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return None
