"""The fault matrix's machinery: an in-process exporter over a simulator with a recognisable
secret, one `Row` of outcomes per fault, the checks that fill it, and the table.

A scenario (tests/e2e/test_faults.py) starts a static simulator and a `FaultHarness` whose counters
start at a fixed origin, polls once in good weather (`good_start`), injects a fault, polls
through it (`check_serving`: up, serving the last good counters), ends it and polls again
(`check_recovery`: exact against the official SDK, `cams_up` 1); `check_metric` and `check_log`
record the self-metric and the log line that named the fault, `finish` the monotonicity.
`render_matrix` prints the rows as a table.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cams_simulator import Simulator
from exporter.cams.model import DAY_MS
from tests.kit.configs import Account, config_text, days_back
from tests.kit.exact import exact_problems
from tests.kit.inproc import PolledExporter
from tests.kit.series import Series, decreases, template_counters, value
from tests.kit.sim import SECRET

SPACE = "cams-demo"
CHUNK_MS = 2 * DAY_MS  # the oracle reads two days a call (one scenario refuses longer ranges)


def origin() -> tuple[dt.date, int]:
    """The fixed origin of the counters (4 UTC days ago), as a date and in ms."""
    return days_back(4)


def fault_config(
    sim: Simulator,
    *,
    state: Path | None = None,
    max_range: str = "5d",
    lookback: str = "2d",
    list_qps: float = 5,
) -> str:
    """Counters from `origin()`, a 1 s timeout and one retry, the simulator's secret."""
    poll: dict[str, Any] = {"interval": "10s", "lookback": lookback, "max_range": max_range}
    poll |= {"counters_since": origin()[0], "timeout": "1s", "max_retries": 1}
    account = Account(sim.url, secret=SECRET, list_qps=list_qps, spaces=({"cust_space_id": SPACE},))
    return config_text(account, poll=poll, state=state)


class FaultHarness(PolledExporter):
    """A `PolledExporter` (lifecycle on, answers checked for the secret) whose config is a file
    a scenario may rewrite (`write_config`) before a POST /-/reload."""

    def __init__(self, tmp: Path, sim: Simulator, **config: Any) -> None:
        self.sim = sim
        self.config_path = tmp / f"cams-{time.monotonic_ns()}.yml"
        self.write_config(**config)
        super().__init__(self.config_path, lifecycle=True, secret=SECRET)

    def write_config(self, **config: Any) -> None:
        self.config_path.write_text(fault_config(self.sim, **config))


COLUMNS = (
    "fault",
    "stays up",
    "serves last data",
    "monotonic",
    "exact after recovery",
    "self-metric moved",
    "log line",
)


@dataclass
class Row:
    """One fault's outcomes; `problems` says what went wrong, if anything."""

    fault: str
    stays_up: bool = True
    serves_last: bool = True
    monotonic: bool = True
    exact: bool = False
    metric: str = ""
    log: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, column: str, message: str) -> None:
        self.problems.append(f"{column}: {message}")
        if column == "stays up":
            self.stays_up = False
        elif column == "serves last data":
            self.serves_last = False
        elif column == "monotonic":
            self.monotonic = False
        elif column == "exact after recovery":
            self.exact = False

    @property
    def ok(self) -> bool:
        return not self.problems and self.exact and bool(self.metric) and bool(self.log)

    def cells(self) -> tuple[str, ...]:
        def yes(flag: bool) -> str:
            return "yes" if flag else "NO"

        return (
            self.fault,
            yes(self.stays_up),
            yes(self.serves_last),
            yes(self.monotonic),
            yes(self.exact),
            self.metric or "NO",
            self.log or "NO",
        )


def render_matrix(rows: list[Row]) -> str:
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(table[0]), rule, *(line(cells) for cells in table[1:])])


def check_log(
    row: Row,
    lines: list[str],
    pattern: str,
    cycles: int,
    *,
    max_per_cycle: int = 2,
    levels: tuple[str, ...] = ("error", "warn"),
    shown: str | None = None,
) -> None:
    """One clear line names the fault; no flood (one error line per cycle, not one per
    template); no secret."""
    regex = re.compile(pattern)
    loud = [line for line in lines if " level=error " in line or " level=warn " in line]
    leveled = [line for line in lines if any(f" level={level} " in line for level in levels)]
    leaked = [line for line in lines if SECRET in line]
    if leaked:
        row.fail("log line", "the secret is in a log line")
    if any("Traceback" in line for line in lines):
        row.fail("log line", "a traceback was logged")
    if len(loud) > max_per_cycle * cycles:
        row.fail("log line", f"{len(loud)} warn/error lines in {cycles} cycles")
    errors = [line for line in loud if " level=error " in line]
    if len(errors) > cycles:
        row.fail("log line", f"{len(errors)} error lines in {cycles} cycles (one per cycle)")
    matching = [line for line in leveled if regex.search(line)]
    matching.sort(key=lambda line: " level=error " not in line)  # the cycle summary first
    if not matching:
        row.fail("log line", f"no warn/error line matches {pattern!r}: {loud[:3]}")
        return
    found = regex.search(matching[0])
    level = next(name for name in levels if f" level={name} " in matching[0])
    text = shown or (found.group(0) if found else pattern)
    same_level = sum(1 for line in matching if f" level={level} " in line)
    row.log = f"{level}: {text} (x{same_level})"


def check_metric(
    row: Row, before: Series, after: Series, name: str, labels: dict[str, str], shown: str
) -> None:
    delta = value(after, name, **labels) - value(before, name, **labels)
    if delta > 0:
        row.metric = f"{shown} +{delta:g}"
    else:
        row.fail("self-metric moved", f"{shown} did not move")


def check_serving(row: Row, harness: FaultHarness, good: Series, *, up: int | None = 0) -> Series:
    """The exporter answers and shows exactly the last good counters."""
    if not harness.serving():
        row.fail("stays up", "the web side stopped answering")
    during = harness.scrape()
    if template_counters(during) != template_counters(good):
        changed = set(template_counters(during).items()) ^ set(template_counters(good).items())
        row.fail("serves last data", f"{len(changed)} counter samples differ from the last good")
    if up is not None and value(during, "cams_up", account="main") != up:
        row.fail("serves last data", f"cams_up is not {up} during the fault")
    return during


def check_recovery(row: Row, harness: FaultHarness, *, attempts: int = 3) -> Series:
    """The first cycle after the fault reads everything (a second or third try is allowed
    only for what a loaded CI machine may add: a 1 s timeout missed)."""
    ok = False
    for _ in range(attempts):
        ok = harness.cycle()
        if ok:
            break
    if not ok:
        row.fail("exact after recovery", "the recovery cycle failed")
    after = harness.scrape()
    problems = exact_problems(harness.sim, after, origin()[1], secret=SECRET, chunk_ms=CHUNK_MS)
    row.exact = not problems and ok
    if problems:
        row.fail("exact after recovery", "; ".join(problems[:3]))
    if value(after, "cams_up", account="main") != 1:
        row.fail("exact after recovery", "cams_up did not come back to 1")
    return after


def finish(row: Row, harness: FaultHarness) -> None:
    found = decreases(harness.history)
    if found:
        row.fail("monotonic", "; ".join(found[:3]))


def end_faults(sim: Simulator) -> None:
    sim.set_faults("")
    sim.set_keys("demo", SECRET)
    sim.set_clock_offset(0)


def through_fault(
    row: Row, harness: FaultHarness, good: Series, cycles: int, *, up: int | None = 0
) -> Series:
    """`cycles` cycles while a fault lasts, each followed by `check_serving`; with `up` 0 (the
    fault fails every call) no cycle may succeed. The last scrape."""
    last = good
    for _ in range(cycles):
        if harness.cycle() and up == 0:
            row.fail("serves last data", "a cycle succeeded during the fault")
        last = check_serving(row, harness, good, up=up)
    return last


def end_and_recover(row: Row, harness: FaultHarness) -> None:
    """End every fault, then `check_recovery` and `finish`."""
    end_faults(harness.sim)
    check_recovery(row, harness)
    finish(row, harness)


def good_start(row: Row, harness: FaultHarness) -> Series:
    """The first, fault-free poll: it must already be exact."""
    if not any(harness.cycle() for _ in range(3)):
        raise AssertionError("the good-weather cycle failed")
    good = harness.scrape()
    problems = exact_problems(harness.sim, good, origin()[1], secret=SECRET, chunk_ms=CHUNK_MS)
    if problems:
        raise AssertionError(f"not exact before any fault: {problems[:3]}")
    return good
