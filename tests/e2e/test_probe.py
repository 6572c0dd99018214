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
from exporter.probe.window import QUESTION as WINDOW
from exporter.probe.window import read_window_finding
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
    ("read-window", {}, WINDOW, "reset after day +7: no: the 7 days 8 days old and older keep"),
    ("read-reset", {"read_reset": True}, WINDOW, "reset after day +7: yes: the 7 days 8 days"),
    ("read-reset-aggregate", {"shape": "aggregate", "read_reset": True}, WINDOW, "not measured"),
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


def test_the_probe_measures_the_read_window_of_a_live_account(tmp_path: Path) -> None:
    """Reads that arrive over a week and reset after it, as a live account shows them: the
    reset is seen, and the recommended lookback covers the window."""
    options = SimulatorOptions(
        templates=4, languages=("en", "es", "pt_BR"), read_reset=True, access_key_secret=SECRET
    )
    with running(options) as sim:
        code, out, err = probe(tmp_path, sim, "--json")
    assert code == 0, err
    found = answers(out)
    assert found[WINDOW].startswith("reset after day +7: yes"), found[WINDOW]
    assert found["_recommended"]["lookback"].startswith("8d (covers Meta's 7-day read")
    assert "cams_read_window_resets_total" in found["_recommended"]["lookback"]


def _meta_profile(share: float, reset: bool, noise: tuple[float, ...] = ()) -> dict[int, Any]:
    """(delivered, read) by age for reads arriving like Meta's (55% on the day, 75..100% on days
    +1..+7), a read share of `share` (times each age's `noise`), reset after day +7 or not."""
    arrived = (55, 75, 85, 90, 94, 97, 99, 100)
    profile = {}
    for age in range(1, 15):
        factor = noise[age - 1] if noise else 1.0
        read = (
            0 if reset and age >= 8 else int(10_000 * share * factor * arrived[min(age, 7)] / 100)
        )
        profile[age] = (10_000, read)
    return profile


def test_read_window_finding_names_the_reset_and_the_late_reads_when_days_agree() -> None:
    kept = read_window_finding(_meta_profile(0.5, reset=False), units=6)
    assert kept.data["reset"] is False
    assert kept.data["late_reads_until_day"] == 4  # 94% on day +4: more than 3% short
    assert "lacks more than 3% of its final reads on day +4" in kept.answer
    reset = read_window_finding(_meta_profile(0.5, reset=True), units=6)
    assert reset.data["reset"] is True and reset.answer.startswith("reset after day +7: yes")
    assert reset.data["late_reads_until_day"] == 4  # against days +5..+7
    assert kept.data["lookback_days"] == reset.data["lookback_days"] == 8
    # Days that disagree by more than 5% among themselves: the late reads cannot be told.
    noise = (1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.3, 0.7, 1.2, 0.9, 1.1, 1.0, 0.8, 1.2)
    noisy = read_window_finding(_meta_profile(0.5, reset=False, noise=noise), units=6)
    assert noisy.data["late_reads_until_day"] is None
    assert "cannot tell from one run" in noisy.answer and noisy.data["reset"] is False
    # Nothing delivered for a week: nothing to say about a reset.
    empty = read_window_finding({}, units=0)
    assert empty.data["reset"] is None and "unknown" in empty.answer


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
