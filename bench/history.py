"""Synthetic history for the rule benchmark (bench/rules.py): the samples the rules read, as
TSDB blocks that a fresh Prometheus loads at start.

The rules of prometheus/recording.yml read the past (lookups at a few offsets, means over hours,
checks over weeks), so a Prometheus that started minutes ago evaluates them on nothing and looks
cheaper than one that has run for weeks. This module writes, for every template-language the
exporter exposes, what those reads find in production:

- the recorded per-unit sums (sent, delivered, read) and expected reads every 2 minutes (the
  rules' interval) around 6 hours, 1 day and 8 days before the run, where the windows and
  baselines look them up, and the delivered sum over the last hour (its mean over 1 hour);
- the hourly delivered sum over 33 hours (the means over 8 and 32 hours), the hourly
  `cams:template_messages_sent:nonzero24h` over a day, the start of each unit's run of sending
  days over 2 days (the always-on checks) and, for the UTILITY units,
  `cams:template_always_on:flag` over a day.

Values continue the exporter's current counters backwards at each unit's own daily rate, so the
rules' live results carry the same series on. Samples are written as OpenMetrics, one file per
2-hour block, and turned into blocks by `promtool tsdb create-blocks-from openmetrics` (which reads
its whole input once per 2-hour block: one file per block keeps that linear).
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

BLOCK_S = 2 * 3600
DAY_S = 86400
HOUR_S = 3600
MEAN_LAG_S = (0.45 * 0.5 + 0.30 * 4 + 0.25 * 16) * 3600  # mean delay of the shape in recording.yml


@dataclass(frozen=True)
class UnitNow:
    """One template-language as the exporter exposes it now."""

    account: str
    space: str
    template_code: str
    language: str
    category: str
    sent: float
    delivered: float
    read: float
    per_day: float  # its delivered messages per day


@dataclass(frozen=True)
class Written:
    """What went into the blocks."""

    samples: int
    files: int
    blocks_s: float


def _unit_labels(u: UnitNow) -> str:
    return (
        f'account="{u.account}",space="{u.space}",template_code="{u.template_code}",'
        f'language="{u.language}"'
    )


def _back(now_value: float, per_day: float, age_s: float) -> int:
    """A counter `age_s` before now, continued backwards at `per_day`."""
    return max(0, int(now_value - per_day * age_s / DAY_S))


class _Files:
    """One OpenMetrics file per 2-hour block; a family's lines are contiguous in each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.handles: dict[int, IO[str]] = {}
        self.family = ""
        self.started: set[int] = set()
        self.samples = 0

    def begin(self, family: str) -> None:
        self.family = family
        self.started = set()

    def add(self, labels: str, value: float, ts: float) -> None:
        block = int(ts) // BLOCK_S
        handle = self.handles.get(block)
        if handle is None:
            handle = (self.directory / f"block-{block}.om").open("w", encoding="utf-8")
            self.handles[block] = handle
        if block not in self.started:
            handle.write(f"# TYPE {self.family} gauge\n")
            self.started.add(block)
        handle.write(f"{self.family}{{{labels}}} {value:g} {ts:.3f}\n")
        self.samples += 1

    def close(self) -> list[Path]:
        paths = []
        for handle in self.handles.values():
            handle.write("# EOF\n")
            handle.close()
            paths.append(Path(handle.name))
        return sorted(paths)


def _every(start: float, end: float, step: float) -> Iterator[float]:
    t = start
    while t <= end:
        yield t
        t += step


def write_history(
    units: list[UnitNow],
    now: float,
    run_s: float,
    work_dir: Path,
    data_dir: Path,
    log: Callable[[str], None],
) -> Written:
    """Write the history of `units` ending at `now` into TSDB blocks under `data_dir`.

    `run_s` is how long after `now` the rules will be measured: the offset windows cover it.
    """
    rng = random.Random(11)
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    files = _Files(work_dir)
    end = now - 60  # the live scrapes take over from here

    windows = [
        (now - offset - 300, now - offset + run_s) for offset in (6 * HOUR_S, DAY_S, 8 * DAY_S)
    ]
    recent = [(now - HOUR_S - 300, end)]
    sums: dict[str, tuple[Callable[[UnitNow], tuple[float, float]], list[tuple[float, float]]]] = {
        "cams:template_messages_sent:sum": (lambda u: (u.sent, u.per_day / 0.95), windows),
        "cams:template_messages_delivered:sum": (
            lambda u: (u.delivered, u.per_day),
            windows + recent,
        ),
        "cams:template_messages_read:sum": (lambda u: (u.read, u.per_day * 0.6), windows),
        "cams:template_reads_expected:sum": (
            lambda u: (u.delivered - u.per_day * MEAN_LAG_S / DAY_S, u.per_day),
            windows,
        ),
    }
    for family, (value_of, spans) in sums.items():
        files.begin(family)
        for u in units:
            value, rate = value_of(u)
            for lo, hi in spans:
                for ts in _every(lo, min(hi, end), 120):
                    files.add(_unit_labels(u), _back(value, rate, now - ts), ts)
    files.begin("cams:template_messages_delivered:sum_1h")
    for u in units:
        for ts in _every(now - 33 * HOUR_S, end, HOUR_S):
            files.add(_unit_labels(u), _back(u.delivered, u.per_day, now - ts), ts)
    files.begin("cams:template_messages_sent:nonzero24h")
    for u in units:
        for ts in _every(now - DAY_S - HOUR_S, end, HOUR_S):
            files.add(_unit_labels(u), 1, ts)
    files.begin("cams:template_messages_sent:every_day_since")
    for u in units:
        # most have sent every day for a month, a few broke their run days ago
        since = now - (rng.uniform(1, 6) if rng.random() < 0.03 else 30) * DAY_S
        for ts in _every(now - 2 * DAY_S, end, DAY_S):
            files.add(_unit_labels(u), since, ts)
    files.begin("cams:template_always_on:flag")
    for u in units:
        if u.category in ("UTILITY", "AUTHENTICATION"):
            for ts in _every(now - DAY_S - HOUR_S, end, HOUR_S):
                files.add(f'{_unit_labels(u)},always_on="category"', 1, ts)

    paths = files.close()
    log(f"history: {files.samples:,} samples in {len(paths)} OpenMetrics files; making blocks")
    started = time.monotonic()
    for path in paths:
        proc = subprocess.run(
            [
                "promtool",
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "-q",
                str(path),
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"promtool refused {path.name}: {(proc.stderr or proc.stdout)[-500:]}"
            )
        path.unlink()
    return Written(files.samples, len(paths), time.monotonic() - started)
