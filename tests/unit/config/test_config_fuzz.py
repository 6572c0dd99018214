"""Config fuzzing in process: random and mutated configs through check-config and startup.

Whatever the file holds, `cams-exporter check-config PATH` and `cams-exporter --config.file PATH`
must never show a traceback or the account's secret. An invalid config exits 2 (before anything
starts) with one line per problem, each line starting with the key path it is about (or the
file, for YAML syntax), and a mutated key is named in what is printed; startup prints the same
lines. A valid one passes check-config (exit 0).

Here (hypothesis, many examples): structured mutations (a key set to a value of any type, a key
deleted, an unknown key added, the secret moved around the credentials) and raw text mutations,
through `exporter.cli.main` with capsys. A seeded sample of the same mutations runs as a user
runs it, in child processes, in tests/e2e/test_check_config.py; the mutations themselves are in
tests/kit/config_fuzz.py.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli import main
from tests.kit.config_fuzz import (
    BASE,
    CREDENTIALS,
    ENV_SECRET,
    MAPPINGS,
    ODD_STRINGS,
    PATHS,
    SPECIAL,
    Path_,
    assert_no_secret,
    check_problem_lines,
    get,
    key_text,
    mutate,
    raw_mutation,
    render,
)
from tests.kit.sim import SECRET

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
