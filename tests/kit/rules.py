"""The shipped Prometheus rules as the tests read them: which group records each series and how
often, and the reads of those series that would miss values between two evaluations."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import yaml

from exporter.config.durations import parse_duration

PROM = Path(__file__).resolve().parents[2] / "prometheus"
RECORDING = PROM / "recording.yml"
# A plain selector looks back 5 minutes: a series recorded at most every 2 minutes is always
# found by one.
PLAIN_READ_S = 120
_READ = re.compile(r"(cams:[a-z0-9_]+:[a-z0-9_]+)(\{[^}]*\})?(\[(\w+)\])?")


@functools.cache
def recorded() -> Mapping[str, tuple[str, float]]:
    """Each recorded series: (the group recording it, that group's interval in seconds). Read
    once per process: test_dashboards asks for every panel's query."""
    return MappingProxyType(
        {
            rule["record"]: (group["name"], parse_duration(group.get("interval", "1m")))
            for group in yaml.safe_load(RECORDING.read_text())["groups"]
            for rule in group["rules"]
        }
    )


def missed_reads(expr: str, reader_group: str | None = None) -> list[str]:
    """The reads in `expr` of a series recorded less often than every 2 minutes by a group other
    than `reader_group` that are not over a range at least that group's interval: between two
    evaluations of the recording group, such a read finds nothing."""
    series = recorded()
    problems = []
    for m in _READ.finditer(expr):
        name, window = m.group(1), m.group(4)
        group, interval = series[name]
        if group == reader_group or interval <= PLAIN_READ_S:
            continue
        if window is None:
            problems.append(f"{name} (every {interval:.0f} s) with a plain selector")
        elif parse_duration(window) < interval:
            problems.append(f"{name} (every {interval:.0f} s) over {window} only")
    return problems
