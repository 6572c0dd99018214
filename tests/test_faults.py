"""The fault matrix: a bad hour of the API, one fault at a time and mixed, against a real exporter.

Every scenario starts a static simulator (the same answer for the same query) and an exporter
whose counters start at a fixed origin, polls once in good weather, then injects one fault
through the simulator's runtime controls (or the state file's file system), polls through it,
ends it and polls again. For each fault the scenario records whether
- the exporter stays up (the cycle returns, /-/healthy, /metrics and / answer),
- /metrics keeps serving the last good counters while the fault lasts,
- no counter ever decreases,
- after recovery every counter equals the official SDK's sum over origin..now (nothing lost,
  nothing counted twice), and `cams_up` is back to 1,
- the self-metric that names the fault moved,
- the fault gave one clear log line (not one per template), and no log line, metric, page or
  error carries the account's secret.
The matrix (fault x outcome) is printed at the end (pytest -s shows it), then asserted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import re
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import load_config
from exporter.logs import LogfmtFormatter
from exporter.model import DAY_MS
from exporter.simulator import Simulator, SimulatorOptions
from exporter.state import CounterStore
from exporter.web.server import WebServer
from tests.kit.sim import Truth, running, sdk_client, sdk_sum
from tests.test_exporter import counters

SECRET = "S3CR3T-cams-test-7f3a"


def assert_no_secret(text: str, where: str) -> None:
    """Fail without echoing `text` (pytest would print the haystack, secret included)."""
    if SECRET in text:
        raise AssertionError(f"the secret is in {where}")


SPACE = "cams-demo"
Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]


def origin() -> tuple[dt.date, int]:
    """The fixed origin of the counters (4 UTC days ago), as a date and in ms."""
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4)
    start = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    return since, int(start.timestamp() * 1000)


def sim_options(**overrides: Any) -> SimulatorOptions:
    """A small static simulator that knows only our recognisable secret."""
    values: dict[str, Any] = {
        "templates": 2,
        "static": True,
        "access_key_secret": SECRET,
        "qps_limit": 1000,
        "list_qps_limit": 50,
        "timeout_fault_s": 1.5,
    }
    values.update(overrides)
    return SimulatorOptions(**values)


def config_text(
    sim: Simulator,
    *,
    state: Path | None = None,
    max_range: str = "5d",
    lookback: str = "2d",
    list_qps: float = 5,
) -> str:
    since, _ = origin()
    lines = [
        "poll:",
        "  interval: 10s",
        f"  lookback: {lookback}",
        f"  max_range: {max_range}",
        f"  counters_since: {since.isoformat()}",
        "  timeout: 1s",
        "  max_retries: 1",
    ]
    if state is not None:
        lines += ["state:", f"  path: {state}"]
    lines += [
        "accounts:",
        "  - name: main",
        f"    endpoint: {sim.url}",
        f"    credentials: {{access_key_id: demo, access_key_secret: {SECRET}}}",
        "    qps: 50",
        f"    list_qps: {list_qps:g}",
        "    spaces:",
        f"      - cust_space_id: {SPACE}",
    ]
    return "\n".join(lines) + "\n"


# -- logs ------------------------------------------------------------------------------------


class LogLines(logging.Handler):
    """Every log record, formatted as the exporter's `--log.format logfmt` writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(LogfmtFormatter())
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._guard:
            self.lines.append(line)

    def mark(self) -> int:
        with self._guard:
            return len(self.lines)

    def since(self, mark: int) -> list[str]:
        with self._guard:
            return list(self.lines[mark:])

    def wait_for(self, pattern: str, mark: int, timeout: float = 20.0) -> str:
        """The first line after `mark` matching `pattern`, waiting for it to be logged."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in self.since(mark):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout}s")


@contextlib.contextmanager
def captured_logs() -> Iterator[LogLines]:
    """Collect the exporter's log lines (debug and up for its own loggers) in logfmt."""
    handler = LogLines()
    root = logging.getLogger()
    ours = logging.getLogger("cams_exporter")
    levels = (root.level, ours.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


# -- series ----------------------------------------------------------------------------------


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def template_counters(series: Series) -> Series:
    return {
        k: v
        for k, v in series.items()
        if k[0].startswith("cams_template_") and k[0].endswith("_total")
    }


def value(series: Series, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for (sample, sample_labels), sample_value in series.items():
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            total += sample_value
    return total


def decreases(history: list[Series]) -> list[str]:
    """Template counters that went down between two consecutive scrapes."""
    problems = []
    for before, after in itertools.pairwise(history):
        for key, old in template_counters(before).items():
            new = after.get(key)
            if new is not None and new < old:
                problems.append(f"{key[0]} {dict(key[1]).get('template_code')}: {old} -> {new}")
    return problems


def truth_of(sdk: Any, code: str, language: str, origin_ms: int, now_ms: int) -> Truth:
    """The SDK's sum over origin..now, read in whole UTC days (two at a time)."""
    total = Truth()
    for lower in range(origin_ms, now_ms, 2 * DAY_MS):
        part = sdk_sum(sdk, code, language, lower, min(now_ms, lower + 2 * DAY_MS))
        total.sent += part.sent
        total.delivered += part.delivered
        total.read += part.read
        for button, count in part.clicks.items():
            total.clicks[button] = total.clicks.get(button, 0) + count
    return total


def exact_problems(sim: Simulator, series: Series, origin_ms: int) -> list[str]:
    """Differences between our counters and the SDK's sums over origin..now, per unit."""
    sdk = sdk_client(sim, secret=SECRET)
    now = int(time.time() * 1000)
    problems = []
    units = sim.templates()
    if not units:
        return ["the simulator lists no template"]
    for unit in units:
        truth = truth_of(sdk, unit.code, unit.language, origin_ms, now)
        ours = counters(series, unit.code, unit.language)
        if (ours.sent, ours.delivered, ours.read) != (truth.sent, truth.delivered, truth.read):
            problems.append(
                f"{unit.code}/{unit.language}: ours {(ours.sent, ours.delivered, ours.read)} "
                f"truth {(truth.sent, truth.delivered, truth.read)}"
            )
        if {k: v for k, v in ours.clicks.items() if v} != {
            k: v for k, v in truth.clicks.items() if v
        }:
            problems.append(f"{unit.code}/{unit.language}: clicks differ")
    if not any(v for (n, _), v in series.items() if n == "cams_template_messages_sent_total"):
        problems.append("no messages at all")
    return problems


# -- the exporter under test -------------------------------------------------------------------


class Harness:
    """An in-process exporter with its web server, polled by hand (cycles in the test's time)."""

    def __init__(self, tmp: Path, sim: Simulator, logs: LogLines, **config: Any) -> None:
        self.sim = sim
        self.logs = logs
        self.config_path = tmp / f"cams-{time.monotonic_ns()}.yml"
        self.write_config(**config)
        self.exporter = Exporter(
            load_config(str(self.config_path), env={}), config_path=str(self.config_path)
        )
        self.server = WebServer("127.0.0.1:0", self.exporter.handlers(), enable_lifecycle=True)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.history: list[Series] = []

    def write_config(self, **config: Any) -> None:
        self.config_path.write_text(config_text(self.sim, **config))

    def cycle(self) -> bool:
        """One poll cycle of every account (discovery included), then save and publish."""
        poller = self.exporter.scheduler
        ok = True
        for account in poller.accounts:
            account.discovery.forget()  # discover every cycle, not once per discovery_interval
            ok = account.run_cycle(poller.stop_event, 8) and ok
        poller.save_state()
        poller.publish()
        return ok

    def get(self, path: str) -> requests.Response:
        response = requests.get(f"{self.url}{path}", timeout=10)
        assert_no_secret(response.text, path)
        return response

    def scrape(self) -> Series:
        response = self.get("/metrics")
        assert response.status_code == 200
        series = parse(response.text)
        self.history.append(series)
        return series

    def wait_scrape(self, check: Callable[[Series], bool], timeout: float = 20.0) -> Series:
        """Scrape until `check` holds: a cycle run by the poller's own thread is logged
        before its snapshot is published."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.scrape()
            if check(series) or time.monotonic() > deadline:
                return series
            time.sleep(0.05)

    def serving(self) -> bool:
        """The web side answers: healthy, metrics and the landing page."""
        return all(self.get(path).status_code == 200 for path in ("/-/healthy", "/metrics", "/"))

    def reload(self) -> tuple[bool, str]:
        response = requests.post(f"{self.url}/-/reload", timeout=30)
        assert_no_secret(response.text, "the reload answer")
        return response.status_code == 200, response.text

    def close(self) -> None:
        self.server.shutdown()
        self.exporter.stop()


# -- the matrix ----------------------------------------------------------------------------------

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


def check_serving(row: Row, harness: Harness, good: Series, *, up: int | None = 0) -> Series:
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


def check_recovery(row: Row, harness: Harness, *, attempts: int = 3) -> Series:
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
    problems = exact_problems(harness.sim, after, origin()[1])
    row.exact = not problems and ok
    if problems:
        row.fail("exact after recovery", "; ".join(problems[:3]))
    if value(after, "cams_up", account="main") != 1:
        row.fail("exact after recovery", "cams_up did not come back to 1")
    return after


def finish(row: Row, harness: Harness) -> None:
    found = decreases(harness.history)
    if found:
        row.fail("monotonic", "; ".join(found[:3]))


@dataclass(frozen=True)
class SimpleFault:
    """A fault that makes every call fail while it lasts."""

    name: str
    inject: Callable[[Simulator], None]
    log_pattern: str
    metric: str
    labels: dict[str, str]
    cycles: int = 2
    shown: str | None = None


def _faults(spec: str) -> Callable[[Simulator], None]:
    return lambda sim: sim.set_faults(spec)


SIMPLE = (
    SimpleFault(
        "throttling storm",
        _faults("throttle=1.0"),
        r"System\.LimitControl",
        "cams_api_throttled_total",
        {"action": "GetChatappTemplateMetric"},
    ),
    SimpleFault(
        "HTTP 5xx",
        _faults("5xx=1.0"),
        r"ServiceUnavailable|InternalError",
        "cams_api_requests_total",
        {"code": "ServiceUnavailable"},
    ),
    SimpleFault(
        "timeouts",
        _faults("timeout=1.0"),
        r"\bTimeout\b",
        "cams_api_requests_total",
        {"code": "Timeout"},
        cycles=1,
    ),
    SimpleFault(
        "connection resets",
        _faults("reset=1.0"),
        r"ConnectionError",
        "cams_api_requests_total",
        {"code": "ConnectionError"},
    ),
    SimpleFault(
        "malformed JSON",
        _faults("malformed=1.0"),
        r"MalformedResponse",
        "cams_api_requests_total",
        {"code": "MalformedResponse"},
    ),
    SimpleFault(
        "HTTP 200 with error Code",
        _faults("error200=1.0"),
        r"InternalError",
        "cams_api_requests_total",
        {"code": "InternalError"},
    ),
    SimpleFault(
        "auth failure (key rotated)",
        lambda sim: sim.set_keys("demo", "rotated-elsewhere"),
        r"SignatureDoesNotMatch",
        "cams_api_requests_total",
        {"code": "SignatureDoesNotMatch"},
    ),
    SimpleFault(
        "clock skew (20 min)",
        lambda sim: sim.set_clock_offset(20 * 60),
        r"InvalidTimeStamp\.Expired.*check this host's clock",
        "cams_api_requests_total",
        {"code": "InvalidTimeStamp.Expired"},
        shown="InvalidTimeStamp.Expired ...; check this host's clock (NTP)",
    ),
)


def end_faults(sim: Simulator) -> None:
    sim.set_faults("")
    sim.set_keys("demo", SECRET)
    sim.set_clock_offset(0)


def good_start(row: Row, harness: Harness) -> Series:
    """The first, fault-free poll: it must already be exact."""
    if not any(harness.cycle() for _ in range(3)):
        raise AssertionError("the good-weather cycle failed")
    good = harness.scrape()
    problems = exact_problems(harness.sim, good, origin()[1])
    if problems:
        raise AssertionError(f"not exact before any fault: {problems[:3]}")
    return good


def simple_scenario(fault: SimpleFault, tmp: Path, logs: LogLines) -> Row:
    row = Row(fault.name)
    with running(sim_options()) as sim:
        harness = Harness(tmp, sim, logs)
        try:
            good = good_start(row, harness)
            mark = logs.mark()
            fault.inject(sim)
            last = good
            for _ in range(fault.cycles):
                if harness.cycle():
                    row.fail("serves last data", "a cycle succeeded during the fault")
                last = check_serving(row, harness, good)
            check_metric(row, good, last, fault.metric, fault.labels, fault.metric)
            check_log(row, logs.since(mark), fault.log_pattern, fault.cycles, shown=fault.shown)
            end_faults(sim)
            check_recovery(row, harness)
            finish(row, harness)
        finally:
            harness.close()
    return row


def mixed_scenario(tmp: Path, logs: LogLines) -> Row:
    """Every transport and API fault at once, at rates where some calls still get through."""
    row = Row("mixed (all of the above at 10-15%)")
    spec = "throttle=0.15,5xx=0.1,timeout=0.05,reset=0.1,malformed=0.1,error200=0.1,seed=11"
    with running(sim_options(templates=3)) as sim:
        harness = Harness(tmp, sim, logs)
        try:
            good = good_start(row, harness)
            mark = logs.mark()
            sim.set_faults(spec)
            last = good
            for _ in range(3):
                harness.cycle()
                last = check_serving(row, harness, good, up=None)
            failed = sum(
                value(last, "cams_api_requests_total", code=code)
                - value(good, "cams_api_requests_total", code=code)
                for code in (
                    "System.LimitControl",
                    "ServiceUnavailable",
                    "InternalError",
                    "Timeout",
                    "ConnectionError",
                    "MalformedResponse",
                )
            )
            if failed > 0:
                row.metric = f"cams_api_requests_total{{code!=OK}} +{failed:g}"
            else:
                row.fail("self-metric moved", "no failed request counted")
            check_log(
                row,
                logs.since(mark),
                r"units failed|discovery failed in",
                3,
            )
            end_faults(sim)
            check_recovery(row, harness)
            finish(row, harness)
        finally:
            harness.close()
    return row


def deleted_scenario(tmp: Path, logs: LogLines) -> Row:
    """A template vanishes from the API, then comes back with the same code."""
    row = Row("template deleted, re-created")
    with running(sim_options(templates=3)) as sim:
        harness = Harness(tmp, sim, logs)
        try:
            good = good_start(row, harness)
            gone = sim.templates()[0].code
            kept = {
                k: v for k, v in template_counters(good).items() if ("template_code", gone) in k[1]
            }
            mark = logs.mark()
            sim.delete_template(gone)
            harness.cycle()  # first discovery without it: kept, its counters unchanged
            first = check_serving(row, harness, good, up=1)
            harness.cycle()  # second: its series go
            second = harness.scrape()
            still = [k for k in template_counters(second) if ("template_code", gone) in k[1]]
            if still:
                row.fail("serves last data", "the deleted template is still exported")
            others = {k: v for k, v in template_counters(good).items() if k not in kept}
            if {k: v for k, v in template_counters(second).items() if k in others} != others:
                row.fail("serves last data", "the other templates' counters changed")
            listed = [value(s, "cams_templates_discovered", space=SPACE) for s in (good, first)]
            units = [value(s, "cams_poll_units", account="main") for s in (first, second)]
            if listed[1] < listed[0] and units[1] < units[0]:
                row.metric = (
                    f"cams_templates_discovered {listed[0]:g}->{listed[1]:g}, "
                    f"cams_poll_units {units[0]:g}->{units[1]:g}"
                )
            else:
                row.fail("self-metric moved", f"discovered {listed}, units {units}")
            check_log(row, logs.since(mark), r"gone from discovery", 2, levels=("info",))
            sim.restore_template(gone)
            harness.cycle()
            back = harness.scrape()
            resumed = {k: v for k, v in template_counters(back).items() if k in kept}
            if resumed != kept:
                row.fail("exact after recovery", "the re-created template did not resume")
            check_recovery(row, harness)
            finish(row, harness)
        finally:
            harness.close()
    return row


def on_list_call(sim: Simulator, calls: int, action: Callable[[], None]) -> threading.Thread:
    """Run `action` as soon as the simulator has answered `calls` more ListChatappTemplate calls."""

    def listed() -> int:
        stats = sim.stats()["actions"].get("ListChatappTemplate", {})
        return int(stats.get("calls", 0))

    base = listed()

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if listed() >= base + calls:
                action()
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def paging_scenario(tmp: Path, logs: LogLines) -> Row:
    """The template list changes between page 1 and page 2 (pages of 100 rows): a template
    deleted (rows shift back: some would be missed) and one created (rows shift forward: some
    would be seen twice)."""
    row = Row("paging changes between pages")
    with running(sim_options(templates=52)) as sim:
        codes = list(dict.fromkeys(t.code for t in sim.templates()))  # in listing order
        sim.delete_template(codes[0])  # 51 templates x 2 languages: 102 rows, two pages
        # list_qps 2: half a second between pages, time enough to change the list in between
        harness = Harness(tmp, sim, logs, list_qps=2)
        try:
            good = good_start(row, harness)
            account = harness.exporter.scheduler.accounts[0]
            mark = logs.mark()
            listed_before = value(good, "cams_api_requests_total", action="ListChatappTemplate")
            changes: list[tuple[Callable[[], None], Callable[[], None]]] = [
                (lambda: None, lambda: sim.delete_template(codes[1])),  # 102 -> 100 rows
                (lambda: sim.restore_template(codes[1]), lambda: sim.restore_template(codes[0])),
            ]
            discovered = [value(good, "cams_templates_discovered", space=SPACE)]
            last = good
            for before, between_pages in changes:
                before()
                watcher = on_list_call(sim, 1, between_pages)
                harness.cycle()
                watcher.join(30)
                truth = {(t.code, t.language) for t in sim.templates()}
                listed = {(t.code, t.language) for t in account.discovery.listed(SPACE)}
                if listed != truth:
                    row.fail(
                        "serves last data",
                        f"discovery saw {len(listed)} rows, the API lists {len(truth)} "
                        f"({len(truth - listed)} missed, {len(listed - truth)} stale)",
                    )
                last = harness.scrape()
                discovered.append(value(last, "cams_templates_discovered", space=SPACE))
                if discovered[-1] != len(truth):
                    row.fail("serves last data", f"cams_templates_discovered {discovered[-1]:g}")
                old = template_counters(good)
                if {k: v for k, v in template_counters(last).items() if k in old} != old:
                    row.fail("serves last data", "counters changed while the list changed")
            listed_after = value(last, "cams_api_requests_total", action="ListChatappTemplate")
            row.metric = (
                "cams_templates_discovered "
                + "->".join(f"{count:g}" for count in discovered)
                + f", list calls +{listed_after - listed_before:g}"
            )
            check_log(row, logs.since(mark), r"changed while paging", 2, levels=("info",))
            check_recovery(row, harness)
            finish(row, harness)
        finally:
            harness.close()
    return row


def overlong_scenario(tmp: Path, logs: LogLines) -> Row:
    """The API refuses ranges longer than 2 days; a reload to max_range 3d meets it, and a
    reload back to 2d ends it."""
    row = Row("over-long range refused")
    with running(sim_options(max_range_s=2 * 86400)) as sim:
        harness = Harness(tmp, sim, logs, max_range="2d")
        try:
            good = good_start(row, harness)
            mark = logs.mark()
            harness.write_config(max_range="3d")
            ok, message = harness.reload()
            if not ok:
                raise AssertionError(f"reload refused: {message}")
            logs.wait_for(r"poll cycle", mark)  # the reloaded poller's first cycle ...
            harness.wait_scrape(lambda s: value(s, "cams_up", account="main") == 0)  # published
            during = check_serving(row, harness, good)
            check_metric(
                row,
                good,
                during,
                "cams_poll_errors_total",
                {"code": "InvalidParameter"},
                "cams_poll_errors_total{code=InvalidParameter}",
            )
            check_log(
                row,
                logs.since(mark),
                r"InvalidParameter.{0,120}must not exceed.*lower poll\.max_range",
                1,
                shown="InvalidParameter ... must not exceed 2d ...; lower poll.max_range",
            )
            mark = logs.mark()
            harness.write_config(max_range="2d")
            ok, message = harness.reload()
            if not ok:
                raise AssertionError(f"reload refused: {message}")
            logs.wait_for(r"poll cycle done", mark)
            after = harness.wait_scrape(lambda s: value(s, "cams_up", account="main") == 1)
            problems = exact_problems(sim, after, origin()[1])
            if problems:
                row.fail("exact after recovery", "; ".join(problems[:3]))
            row.exact = not problems and value(after, "cams_up", account="main") == 1
            finish(row, harness)
        finally:
            harness.close()
    return row


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "64k") -> Iterator[Path]:
    """A small tmpfs mounted at `path` (we run as root), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs (run as root): {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """Fill a file system until it refuses more bytes."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


def state_scenario(tmp: Path, logs: LogLines, kind: str) -> Row:
    """The state directory goes read-only or fills up; polling and serving go on."""
    row = Row(f"state dir {kind}")
    with tiny_tmpfs(tmp / f"statefs-{kind}") as mount, running(sim_options()) as sim:
        state = mount / "state.json"
        harness = Harness(tmp, sim, logs, state=state)
        try:
            good = good_start(row, harness)
            if value(good, "cams_state_writes_total", result="ok") < 1:
                raise AssertionError("the good-weather state write did not happen")
            mark = logs.mark()
            filler: Path | None = None
            if kind == "full":
                filler = fill(mount)
            else:
                remount = ["mount", "-o", "remount,ro", str(mount)]
                subprocess.run(remount, check=True, capture_output=True, timeout=30)
            last = good
            for _ in range(2):
                if not harness.cycle():
                    row.fail("stays up", "polling failed because the state cannot be written")
                last = check_serving(row, harness, good, up=1)
            check_metric(
                row,
                good,
                last,
                "cams_state_writes_total",
                {"result": "error"},
                'cams_state_writes_total{result="error"}',
            )
            reason = "No space left" if kind == "full" else "Read-only file system"
            check_log(
                row,
                logs.since(mark),
                rf"could not write state file .*{reason}",
                2,
                shown=f"could not write state file ...: {reason}",
            )
            if [p.name for p in mount.iterdir() if p.name.endswith(".tmp")]:
                row.fail("exact after recovery", "a temporary state file was left behind")
            if filler is not None:
                filler.unlink()
            else:
                remount = ["mount", "-o", "remount,rw", str(mount)]
                subprocess.run(remount, check=True, capture_output=True, timeout=30)
            after = check_recovery(row, harness)
            if value(after, "cams_state_writes_total", result="ok") <= value(
                last, "cams_state_writes_total", result="ok"
            ):
                row.fail("exact after recovery", "no successful state write after the fault")
            stored, warning = CounterStore.load(str(state))
            if warning is not None:
                row.fail("exact after recovery", warning)
            saved = {(k.template_code, k.language): u.total().sent for k, u in stored.units.items()}
            shown = {
                (dict(k[1])["template_code"], dict(k[1])["language"]): v
                for k, v in after.items()
                if k[0] == "cams_template_messages_sent_total"
            }
            if saved != shown:
                row.fail("exact after recovery", "the state file differs from /metrics")
            finish(row, harness)
        finally:
            harness.close()
    return row


def test_fault_matrix(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    rows: list[Row] = []

    def simple(fault: SimpleFault) -> Callable[[LogLines], Row]:
        return lambda logs: simple_scenario(fault, tmp_path, logs)

    scenarios: list[tuple[str, Callable[[LogLines], Row]]] = [(f.name, simple(f)) for f in SIMPLE]
    scenarios += [
        ("template deleted, re-created", lambda logs: deleted_scenario(tmp_path, logs)),
        ("paging changes between pages", lambda logs: paging_scenario(tmp_path, logs)),
        ("over-long range refused", lambda logs: overlong_scenario(tmp_path, logs)),
        ("state dir read-only", lambda logs: state_scenario(tmp_path, logs, "read-only")),
        ("state dir full", lambda logs: state_scenario(tmp_path, logs, "full")),
        ("mixed (all of the above at 10-15%)", lambda logs: mixed_scenario(tmp_path, logs)),
    ]
    timings = []
    for name, scenario in scenarios:
        started = time.monotonic()
        with captured_logs() as logs:
            try:
                row = scenario(logs)
            except Exception as exc:  # record and go on: the matrix shows every fault
                row = Row(name, exact=False)
                row.problems.append(
                    f"scenario crashed: {type(exc).__name__}: {exc} {traceback.format_exc(limit=3)}"
                )
            if any(SECRET in line for line in logs.lines):
                row.problems.append("the secret appeared in a log line")
        timings.append(f"{name}: {time.monotonic() - started:.1f}s")
        rows.append(row)
    print("\nfault matrix\n" + render_matrix(rows))
    print("scenario time: " + ", ".join(timings))
    for row in rows:
        for problem in row.problems:
            print(f"  {row.fault}: {problem}")
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the test output")
    print(out, end="")
    failed = [row.fault for row in rows if not row.ok]
    assert not failed, f"faults with a bad outcome: {failed}"
