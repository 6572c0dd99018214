"""Config fuzzing: random and mutated configs through check-config and startup.

Whatever the file holds, `cams-exporter check-config PATH` and `cams-exporter --config.file PATH`
must never show a traceback or the account's secret. An invalid config exits 2 (before anything
starts) with one line per problem, each line starting with the key path it is about (or the
file, for YAML syntax), and a mutated key is named in what is printed; startup prints the same
lines. A valid one passes check-config (exit 0) and starts.

- In process (hypothesis, many examples): structured mutations (a key set to a value of any
  type, a key deleted, an unknown key added, the secret moved around the credentials) and raw
  text mutations, through `exporter.cli.main` with capsys.
- As a user runs it (bounded: 40 subprocesses): a seeded sample of the same mutations through
  `python -m exporter check-config` and `python -m exporter --config.file`; valid ones are
  started and stopped with SIGTERM.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli import main
from tests.kit.procs import child_env, start_exporter
from tests.kit.sim import SECRET
from tests.kit.waits import wait_http

ENV_SECRET = "CAMS_FUZZ_SECRET"


def assert_no_secret(text: str, where: str) -> None:
    """Fail without echoing `text` (pytest would print the haystack, secret included)."""
    if SECRET in text:
        raise AssertionError(f"the secret is in {where}")


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

value_st: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
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


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """`main` configures the root logger for the process; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


mutation_st = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), value_st, st.just("")),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none(), st.just("")),
    st.tuples(
        st.just("add"),
        st.sampled_from(MAPPINGS),
        value_st,
        st.one_of(st.just(""), st.text(min_size=1, max_size=12), st.sampled_from(["qsp", "nme"])),
    ),
)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(mutation_st, min_size=1, max_size=3),
    raw=st.one_of(st.none(), st.integers(0, 2**32)),
    secret_from_env=st.booleans(),
)
def test_mutated_configs_in_process(
    mutations: list[tuple[str, Path_, Any, str]],
    raw: int | None,
    secret_from_env: bool,
    capsys: pytest.CaptureFixture[str],
    logging_restored: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SECRET, SECRET)
    config = copy.deepcopy(BASE)
    if secret_from_env:
        get(config, CREDENTIALS)["access_key_secret"] = "${" + ENV_SECRET + "}"
    named: list[str] = []
    for kind, path, value, key in mutations:
        try:
            target = mutate(config, kind, path, value, key)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
        named.append(key_text(target))
    text = render(config)
    if raw is not None:
        text = raw_mutation(text, random.Random(raw))
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "cams.yml")
        with open(source, "w", encoding="utf-8") as handle:
            handle.write(text)
        code, out, err = run_main(["check-config", source], capsys)
        assert code in (0, 2), (code, err)
        assert "Traceback" not in out + err
        assert_no_secret(out + err, "check-config's output")
        if code == 0:
            assert out.startswith("config OK"), out
            return
        lines = check_problem_lines(err, source)
        if raw is None and len(named) == 1 and named[0]:
            # a single structured mutation broke it: the key (or its parent) is named
            assert named[0] in err, (named, lines)
        started, out2, err2 = run_main(
            ["--config.file", source, "--web.listen-address", "127.0.0.1:0"], capsys
        )
        assert started == 2
        assert "Traceback" not in out2 + err2
        assert_no_secret(out2 + err2, "startup's output")
        assert err2.strip().splitlines() == lines, "startup and check-config disagree"


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


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_files_in_process(
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    logging_restored: None,
) -> None:
    content = SPECIAL[name]
    path = tmp_path / "cams.yml"
    if name == "a directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    started = time.monotonic()
    code, out, err = run_main(["check-config", str(path)], capsys)
    assert time.monotonic() - started < 20
    assert code == 2
    assert "Traceback" not in out + err
    assert_no_secret(out + err, "check-config's output")
    lines = check_problem_lines(err, str(path))
    if name == "unset variable":
        assert any(
            line.startswith("accounts[0].credentials.access_key_secret:")
            and "CAMS_FUZZ_UNSET" in line
            for line in lines
        )
    code, out, err2 = run_main(["--config.file", str(path)], capsys)
    assert code == 2 and err2.strip().splitlines() == lines


# -- as a user runs it -------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, ENV_SECRET: SECRET},
    )


def sample_configs(count: int, seed: int = 7) -> list[tuple[str, str, list[str]]]:
    """(description, text, keys that should be named) for a seeded sample of mutations."""
    rng = random.Random(seed)
    out = []
    values: list[Any] = [None, True, -1, 0, 80, 10**20, 1.5, float("inf"), [], {}, *ODD_STRINGS]
    for i in range(count):
        config = copy.deepcopy(BASE)
        if i % 4 == 0:
            get(config, CREDENTIALS)["access_key_secret"] = "${" + ENV_SECRET + "}"
        kind = ("set", "delete", "add", "raw")[i % 4]
        named: list[str] = []
        if kind == "raw":
            text = raw_mutation(render(config), rng)
            out.append((f"{i}: raw", text, named))
            continue
        path = rng.choice(MAPPINGS if kind == "add" else PATHS)
        target = mutate(config, kind, path, rng.choice(values), rng.choice(["", "qsp", "x y"]))
        named.append(key_text(target))
        out.append((f"{i}: {kind} {key_text(path)}", render(config), named))
    return out


def test_mutated_configs_as_a_user_runs_them(tmp_path: Path) -> None:
    """20 configs, each through check-config and startup: 40 subprocess runs."""
    valid = invalid = 0
    for description, text, named in sample_configs(20):
        path = tmp_path / f"cams-{valid + invalid}.yml"
        path.write_text(text, encoding="utf-8")
        checked = cli("check-config", str(path))
        output = checked.stdout + checked.stderr
        assert "Traceback" not in output, description
        assert_no_secret(output, description)
        assert checked.returncode in (0, 2), description
        if checked.returncode == 2:
            invalid += 1
            lines = check_problem_lines(checked.stderr, str(path))
            if named and named[0]:
                assert named[0] in checked.stderr, (description, lines)
            started = cli("--config.file", str(path), "--web.listen-address", "127.0.0.1:0")
            assert started.returncode == 2, description
            assert "Traceback" not in started.stdout + started.stderr
            assert_no_secret(started.stdout + started.stderr, description)
            assert started.stderr.strip().splitlines() == lines, description
            continue
        valid += 1
        assert checked.stdout.startswith("config OK"), description
        exporter = start_exporter(
            tmp_path / f"exporter-{valid + invalid}.log",
            "--config.file",
            str(path),
            "--log.format",
            "logfmt",
            env=child_env({ENV_SECRET: SECRET}),
        )
        try:
            wait_http(f"{exporter.url}/-/healthy", timeout=30)
        finally:
            code = exporter.stop(signal.SIGTERM, timeout=30)
        log = exporter.log
        assert code == 0, description
        assert "Traceback" not in log, description
        assert_no_secret(log, description)
    print(f"\nconfig fuzz (subprocess): {valid} valid configs started, {invalid} refused")
    assert invalid >= 10 and valid >= 1
