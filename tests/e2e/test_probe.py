"""`cams-exporter probe` against the simulator playing each answer variant: the report says what
the API does, what the exporter does about it, recommends settings and never shows a secret."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cams_simulator import Simulator, SimulatorOptions
from exporter.probe.questions import MAX_CALLS
from exporter.probe.report import run_probe
from tests.kit.configs import Account
from tests.kit.configs import write_config as kit_write_config
from tests.kit.sim import running

SECRET = "probe-secret-4711"


def write_config(tmp_path: Path, sim: Simulator, secret: str = SECRET) -> Path:
    account = Account(sim.url, secret=secret, qps=40, list_qps=4)
    return kit_write_config(tmp_path / "config.yaml", account)


def probe(tmp_path: Path, sim: Simulator, *flags: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_probe(
        str(write_config(tmp_path, sim)),
        None,
        None,
        "--json" in flags,
        "--redact" in flags,
        out,
        err,
    )
    return code, out.getvalue(), err.getvalue()


def answers(text: str) -> dict[str, Any]:
    [account] = json.loads(text)["accounts"]
    return {f["question"]: f["answer"] for f in account["findings"]} | {
        "_calls": account["calls"],
        "_recommended": account["recommended"],
    }


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("default", {}, "GetChatappTemplateMetric answer shape", "one row per day"),
    ("default-utc", {}, "GetChatappTemplateMetric answer shape", "aligned to UTC;"),
    ("default-keys", {}, "ListChatappTemplate paging", "keys: the SDK's Index/Size"),
    ("default-total", {}, "ListChatappTemplate paging", "Total is int, counting template-lang"),
    ("default-language", {}, "Language omitted", "one row per language, summing"),
    ("default-half-hour", {}, "HALF_HOUR for templates", "works: 48 half-hour rows"),
    ("default-range", {}, "Longest Start..End accepted", "30d accepted; refused 60d"),
    ("default-reach", {}, "How far back data goes", "activity up to 90 days back"),
    ("default-clipped", {}, "Rows clipped to the queried range", "not clipped"),
    ("aggregate", {"shape": "aggregate"}, "GetChatappTemplateMetric answer shape", "aggregate"),
    ("utc8", {"shape": "utc8"}, "GetChatappTemplateMetric answer shape", "aligned to UTC+8"),
    (
        "sparse",
        {"shape": "sparse", "history_s": 2 * 86400.0},
        "GetChatappTemplateMetric answer shape",
        "left out (sparse)",
    ),
    (
        "page-cap",
        {"variants": "page-cap", "templates": 8},
        "ListChatappTemplate paging",
        "capped at 10",
    ),
    (
        "lowercase-page",
        {"variants": "lowercase-page", "templates": 8},
        "ListChatappTemplate paging",
        "lower-case index/size only",
    ),
    ("total-string", {"variants": "total-string"}, "ListChatappTemplate paging", "Total is str"),
    (
        "total-codes",
        {"variants": "total-codes"},
        "ListChatappTemplate paging",
        "counting templates",
    ),
    ("seconds", {"variants": "seconds"}, "GetChatappTemplateMetric answer shape", "in seconds"),
    ("clipped", {"variants": "clipped"}, "Rows clipped to the queried range", "are clipped"),
    (
        "language-required",
        {"variants": "language-required"},
        "Language omitted",
        "refused (MissingParameter)",
    ),
    ("language-summed", {"variants": "language-summed"}, "Language omitted", "one row summing"),
    (
        "half-hour-refused",
        {"variants": "half-hour-refused"},
        "HALF_HOUR for templates",
        "refused (InvalidParameter)",
    ),
    ("max-range", {"max_range_s": 7 * 86400.0}, "Longest Start..End accepted", "7d accepted"),
    ("history", {"history_s": 20 * 86400.0}, "How far back data goes", "none 30+ days back"),
    (
        "throttle-429",
        {"variants": "throttle-429", "qps_limit": 2},
        "Throttling",
        "Throttling.User (HTTP 429)",
    ),
    ("throttled", {"qps_limit": 2}, "Throttling", "System.LimitControl (HTTP 400)"),
]


Probed = Callable[[dict[str, Any]], tuple[int, str, str]]


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Probed:
    """`probe --json` against a static simulator with `options`, run once per distinct options
    (the nine `default-*` cases read different answers of one report)."""
    runs: dict[str, tuple[int, str, str]] = {}

    def run(options: dict[str, Any]) -> tuple[int, str, str]:
        key = json.dumps(options, sort_keys=True)
        if key not in runs:
            settings = {
                "templates": 4,
                "languages": ("en", "es", "pt_BR"),
                "static": True,
                "access_key_secret": SECRET,
                **options,
            }
            with running(SimulatorOptions(**settings)) as sim:
                runs[key] = probe(tmp_path_factory.mktemp("probe"), sim, "--json")
        return runs[key]

    return run


@pytest.mark.parametrize(
    ("name", "options", "question", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_probe_reports_what_the_api_does(
    name: str, options: dict[str, Any], question: str, expected: str, probed: Probed
) -> None:
    code, out, err = probed(options)
    assert code == 0, err
    found = answers(out)
    assert expected in found[question], found[question]
    assert found["_calls"] <= MAX_CALLS + 2  # the last question may take its retries
    assert SECRET not in out + err


def test_recommended_settings_follow_the_findings(tmp_path: Path) -> None:
    options = SimulatorOptions(
        templates=3, static=True, max_range_s=7 * 86400.0, access_key_secret=SECRET
    )
    with running(options) as sim:
        code, out, _ = probe(tmp_path, sim, "--json")
    assert code == 0
    recommended = answers(out)["_recommended"]
    assert recommended["max_range"] == "7d"
    assert recommended["granularity"].startswith("DAILY")


def test_the_text_report_redacted_shows_no_template_code_or_secret(tmp_path: Path) -> None:
    with running(SimulatorOptions(templates=3, static=True, access_key_secret=SECRET)) as sim:
        codes = {t.code for t in sim.templates()} | {t.name for t in sim.templates()}
        code, out, err = probe(tmp_path, sim, "--redact")
    assert code == 0, err
    assert "## Recommended settings" in out and "poll.max_range: 30d" in out
    assert "template-1" in out
    assert not any(c in out for c in codes)
    assert SECRET not in out + err


def test_a_refused_probe_exits_1_with_one_line(tmp_path: Path) -> None:
    with running(SimulatorOptions(templates=2, access_key_secret="another-secret")) as sim:
        code, out, err = probe(tmp_path, sim)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SignatureDoesNotMatch" in lines[0]
    assert SECRET not in out + err


def test_bad_config_exits_2_through_the_command_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts:\n  - name: main\n    qps: 80\n")
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "probe", "--config.file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "accounts[0].qps: must be between 1 and 50, got 80" in proc.stderr
    assert "Traceback" not in proc.stderr
