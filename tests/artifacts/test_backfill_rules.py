"""prometheus/backfill/pass-N.yml, the recording rules for `promtool tsdb create-blocks-from
rules` over backfilled history (mixin/backfill.py): promtool accepts them, each pass reads only
the exporter's series (as their last value of the past day) and series of earlier passes, and
they are recording.yml's groups otherwise unchanged. tests/e2e/test_backfill_baselines.py runs
them over a real Prometheus."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mixin.backfill import TARGETS, BackfillError, levels, needed, read_imported

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
PASSES = sorted((PROM / "backfill").glob("pass-*.yml"), key=lambda p: int(p.stem[5:]))
RECORDED = re.compile(r"cams:[a-z0-9_]+:[a-z0-9_]+")


def groups_of(path: Path) -> list[dict]:
    groups: list[dict] = yaml.safe_load(path.read_text())["groups"]
    return groups


def test_promtool_accepts_every_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package `prometheus`)"
    assert len(PASSES) == 7
    proc = subprocess.run(
        [promtool, "check", "rules", *map(str, PASSES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_each_pass_reads_only_series_of_earlier_passes() -> None:
    written: set[str] = set()
    for path in PASSES:
        mine = {rule["record"] for group in groups_of(path) for rule in group["rules"]}
        for group in groups_of(path):
            own = {rule["record"] for rule in group["rules"]}
            for rule in group["rules"]:
                reads = set(RECORDED.findall(rule["expr"])) - own
                assert reads <= written, (path.name, rule["record"], reads - written)
        written |= mine
    assert set(TARGETS) <= written


def test_exporter_series_are_read_as_their_last_value_of_the_past_day() -> None:
    shipped = {g["name"]: g for g in groups_of(PROM / "recording.yml")}
    seen = 0
    for path in PASSES:
        for group in groups_of(path):
            original = shipped[group["name"]]
            assert group.get("interval") == original.get("interval"), group["name"]
            for rule, source in zip(group["rules"], original["rules"], strict=True):
                assert rule["record"] == source["record"]
                assert rule["expr"] == read_imported(source["expr"])
                raw = re.findall(r"cams_[a-z0-9_]+(?:\{[^}]*\})?(?:\[\w+\])?", rule["expr"])
                assert all(r.endswith("[1d]") for r in raw), (rule["record"], raw)
                seen += len(raw)
    assert seen >= 5  # sent, delivered, read, the hourly delivered, the category


def test_only_what_the_baselines_need_and_no_rule_of_the_live_windows() -> None:
    names = [g["name"] for path in PASSES for g in groups_of(path)]
    shipped = groups_of(PROM / "recording.yml")
    assert sorted(names) == sorted(needed(shipped, TARGETS))
    assert "cams-template-stale" not in names and "cams-template-read-rate-6h" not in names
    assert max(levels([g for g in shipped if g["name"] in names]).values()) == len(PASSES)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum by (a) (cams_x_total)", "sum by (a) (last_over_time(cams_x_total[1d]))"),
        (
            'max(cams_template_info{category=~"A|B",cams_always_on="true"}) * cams:a:b',
            'max(last_over_time(cams_template_info{category=~"A|B",cams_always_on="true"}[1d]))'
            " * cams:a:b",
        ),
        (
            'label_replace(cams:a:b, "q", "cams_x", "", "")',
            'label_replace(cams:a:b, "q", "cams_x", "", "")',
        ),
    ],
)
def test_read_imported(expr: str, expected: str) -> None:
    assert read_imported(expr) == expected


@pytest.mark.parametrize("expr", ["rate(cams_x_total[5m])", "cams_x_total offset 1d"])
def test_a_range_or_offset_of_an_exporter_series_is_refused(expr: str) -> None:
    with pytest.raises(BackfillError, match="cams_x_total"):
        read_imported(expr)


def test_groups_that_read_each_other_are_refused() -> None:
    loop = [
        {"name": "a", "rules": [{"record": "cams:a:x", "expr": "cams:b:x"}]},
        {"name": "b", "rules": [{"record": "cams:b:x", "expr": "cams:a:x"}]},
    ]
    with pytest.raises(BackfillError, match="read each other"):
        levels(loop)
