"""The config fuzz suite's material: a valid base config, its key paths, structured and raw
mutations, special files, and the check that every problem line names a key.

Shared by the in-process fuzzing (tests/unit/config/test_config_fuzz.py), the YAML loader's
comparison (tests/unit/config/test_config_yaml.py) and the runs as a user runs them
(tests/e2e/test_check_config.py).
"""

from __future__ import annotations

import random
import re
from typing import Any

import yaml

from tests.kit.sim import SECRET, assert_no_secret

__all__ = ["assert_no_secret"]

ENV_SECRET = "CAMS_FUZZ_SECRET"


BASE: dict[str, Any] = {
    "poll": {
        "interval": "5m",
        "granularity": "DAILY",
        "lookback": "3d",
        "max_range": "30d",
        "counters_since": "2026-01-01",
        "discovery_interval": "1h",
        "timeout": "5s",
        "max_retries": 2,
    },
    "state": {"path": "/nonexistent-dir/state.json"},
    "accounts": [
        {
            "name": "main",
            "region": "ap-southeast-1",
            "endpoint": "http://127.0.0.1:1",
            "credentials": {
                "access_key_id": "demo",
                "access_key_secret": SECRET,
                "security_token": "${CAMS_FUZZ_TOKEN:-}",
            },
            "qps": 40,
            "list_qps": 4,
            "spaces": [
                {
                    "cust_space_id": "cams-xxxx",
                    "isv_code": None,
                    "discover": True,
                    "filters": {
                        "template_type": "WHATSAPP",
                        "category": "MARKETING",
                        "audit_status": "pass",
                        "name_regex": ".*",
                    },
                    "templates": [
                        {"code": "744c4b5c79c9432497a075bdfca36bf5", "language": "en"},
                    ],
                }
            ],
        }
    ],
}

Path_ = tuple[str | int, ...]
CREDENTIALS: Path_ = ("accounts", 0, "credentials")
SECRET_PATHS = {(*CREDENTIALS, "access_key_secret"), (*CREDENTIALS, "security_token")}


def all_paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key path of the base config (mappings and lists), the root excluded."""
    out: list[Path_] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(all_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((*prefix, index))
            out.extend(all_paths(value, (*prefix, index)))
    return out


def get(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


PATHS = all_paths(BASE)
MAPPINGS = [p for p in [(), *PATHS] if isinstance(get(BASE, p), dict)]


def key_text(path: Path_) -> str:
    """`accounts[0].spaces[0].filters` for ("accounts", 0, "spaces", 0, "filters")."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


ODD_STRINGS = (
    "",
    " ",
    "5m",
    "0s",
    "-1m",
    "30d",
    "400d",
    "1y",
    "5 m",
    "DAILY",
    "HALF_HOUR",
    "hourly",
    "2026-13-45",
    "1999-01-01",
    "2099-01-01",
    "http://",
    "ftp://example.com",
    "example.com:99999",
    "127.0.0.1:8080",
    "${CAMS_FUZZ_UNSET}",
    "${CAMS_FUZZ_UNSET:-fallback}",
    "${",
    "$$",
    "[",
    "(",
    "*",
    "default",
    "ap-southeast-1",
    "AP_SOUTHEAST",
    "é" * 3,
    "\u202e",
    "a" * 300,
    "null",
    "true",
    "1e400",
    "0x10",
)


def mutate(config: dict[str, Any], kind: str, path: Path_, value: Any, key: str) -> Path_:
    """Apply one structured mutation in place; returns the path the problems should name.

    A mutation below a node that an earlier mutation replaced (say by a number) no longer
    applies and leaves the config as it is.
    """
    try:
        return _mutate(config, kind, path, value, key)
    except (KeyError, IndexError, TypeError):
        return path


def _mutate(config: dict[str, Any], kind: str, path: Path_, value: Any, key: str) -> Path_:
    if kind == "set":
        if path in SECRET_PATHS and isinstance(value, str) and value:
            value = f"{SECRET}{value}"  # a secret of another shape: still never shown
        get(config, path[:-1])[path[-1]] = value
        return path
    if kind == "delete":
        parent = get(config, path[:-1])
        if isinstance(parent, list):
            if isinstance(path[-1], int) and -len(parent) <= path[-1] < len(parent):
                parent.pop(path[-1])
            return path[:-1]  # (or nothing left to delete: an earlier mutation replaced it)
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        return path
    # "add": an unknown key; under the credentials its value (or its name) is the secret
    parent = get(config, path)
    if path == CREDENTIALS:
        parent[key or SECRET] = SECRET
    else:
        parent[key or "bogus_key"] = value
    return path


def raw_mutation(text: str, rng: random.Random) -> str:
    """A byte-level accident: truncated, a character inserted, deleted or a line doubled."""
    choice = rng.randrange(5)
    at = rng.randrange(len(text) + 1)
    if choice == 0:
        return text[:at]
    if choice == 1:
        return text[:at] + rng.choice(":-[]{}&*!|>'\"%@`#,?\t \n") + text[at:]
    if choice == 2:
        return text[:at] + text[at + 1 :]
    lines = text.splitlines(keepends=True)
    index = rng.randrange(len(lines))
    if choice == 3:
        return "".join(lines[: index + 1] + lines[index:])
    return "".join([*lines[:index], " " + lines[index], *lines[index + 1 :]])


def render(config: dict[str, Any]) -> str:
    """The config as YAML text, by libyaml's emitter (PyYAML's own takes ten times as long)."""
    return yaml.dump(config, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)


KEY_LINE = re.compile(r"^[A-Za-z0-9_-]+(?:\[\d+\])*(?:\.[A-Za-z0-9_-]+(?:\[\d+\])*)*: \S")


def check_problem_lines(stderr: str, source: str) -> list[str]:
    """Each line names a key path (or the file, for what belongs to no key)."""
    lines = stderr.strip().splitlines()
    assert lines, "exit 2 without saying why"
    for line in lines:
        assert line.startswith(f"{source}: ") or KEY_LINE.match(line), line
    return lines


SPECIAL: dict[str, bytes | None] = {
    "empty": b"",
    "comments only": b"# nothing here\n",
    "a list": b"- poll\n- accounts\n",
    "a scalar": b"42\n",
    "not UTF-8": b"poll:\n  interval: \xff\xfe5m\n",
    "NUL bytes": b"poll:\x00\n",
    "deeply nested": b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "alias bomb": b"".join(
        f"l{i}: &l{i} [".encode() + b",".join([f"*l{i - 1}".encode()] * 9) + b"]\n"
        if i
        else b"l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
        for i in range(9)
    ),
    "self alias": b"a: &a [*a]\n",
    "unhashable key": b"? [a]\n: b\n",
    "duplicate anchors": b"a: &x 1\nb: &x 2\n",
    "tabs": b"poll:\n\tinterval: 5m\n",
    "credentials as a list": (
        "accounts:\n  - name: main\n    credentials:\n"
        f"      - access_key_id: x\n      - access_key_secret: {SECRET}\n"
    ).encode(),
    "secret as a credentials key": (
        f"accounts:\n  - name: main\n    credentials:\n      {SECRET}: 1\n      access_key_id: x\n"
    ).encode(),
    "unset variable": b"accounts:\n  - name: main\n    credentials:\n"
    b"      access_key_id: x\n      access_key_secret: ${CAMS_FUZZ_UNSET}\n",
    "a directory": None,
    "missing file": None,
}
