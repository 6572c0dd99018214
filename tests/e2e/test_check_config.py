"""`cams-exporter check-config` and startup as a user runs them: child processes.

- The config fuzz suite's seeded sample (bounded: 40 subprocesses): mutations of a valid config
  (tests/kit/config_fuzz.py) through `python -m exporter check-config` and `python -m exporter
  --config.file`: never a traceback or the account's secret; an invalid config exits 2 with one
  line per problem naming its key, startup prints the same lines; valid ones are started and
  stopped with SIGTERM. The same mutations run in process, with many more examples, in
  tests/unit/config/test_config_fuzz.py.
- A document nested beyond what libyaml's composer survives (it would crash the process) is a
  one-line error.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.kit.config_fuzz import (
    BASE,
    CREDENTIALS,
    ENV_SECRET,
    MAPPINGS,
    ODD_STRINGS,
    PATHS,
    assert_no_secret,
    check_problem_lines,
    get,
    key_text,
    mutate,
    raw_mutation,
    render,
)
from tests.kit.procs import child_env, start_exporter
from tests.kit.sim import SECRET
from tests.kit.waits import wait_http


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


def test_a_document_nested_beyond_what_libyaml_survives_is_a_one_line_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("a: " + "[" * 300_000 + "\n", encoding="utf-8")  # libyaml's composer: SIGSEGV
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-300:])
    assert done.stderr == f"{path}: invalid YAML: nested too deeply\n"
