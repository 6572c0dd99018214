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
One test per fault, each asserting its row; the module prints the whole matrix (fault x
outcome) once its tests have run: `python -m pytest -s -p no:xdist tests/e2e/test_faults.py`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from cams_simulator import Simulator
from exporter.counting.store import CounterStore
from tests.kit.exact import exact_problems
from tests.kit.logs import LogLines, captured_logs
from tests.kit.matrix import (
    CHUNK_MS,
    SPACE,
    FaultHarness,
    Row,
    check_log,
    check_metric,
    check_recovery,
    check_serving,
    end_and_recover,
    finish,
    good_start,
    origin,
    render_matrix,
    through_fault,
)
from tests.kit.series import template_counters, value
from tests.kit.sim import SECRET, assert_no_secret, running
from tests.kit.sim import secret_options as sim_options
from tests.kit.waits import WaitTimeout, wait_until


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


def simple_scenario(fault: SimpleFault, tmp: Path, logs: LogLines) -> Row:
    row = Row(fault.name)
    with running(sim_options()) as sim, FaultHarness(tmp, sim) as harness:
        good = good_start(row, harness)
        mark = logs.mark()
        fault.inject(sim)
        last = through_fault(row, harness, good, fault.cycles)
        check_metric(row, good, last, fault.metric, fault.labels, fault.metric)
        check_log(row, logs.since(mark), fault.log_pattern, fault.cycles, shown=fault.shown)
        end_and_recover(row, harness)
    return row


def mixed_scenario(tmp: Path, logs: LogLines) -> Row:
    """Every transport and API fault at once, at rates where some calls still get through."""
    row = Row("mixed (all of the above at 10-15%)")
    spec = "throttle=0.15,5xx=0.1,timeout=0.05,reset=0.1,malformed=0.1,error200=0.1,seed=11"
    with running(sim_options(templates=3)) as sim, FaultHarness(tmp, sim) as harness:
        good = good_start(row, harness)
        mark = logs.mark()
        sim.set_faults(spec)
        last = through_fault(row, harness, good, 3, up=None)
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
        check_log(row, logs.since(mark), r"units failed|discovery failed in", 3)
        end_and_recover(row, harness)
    return row


def deleted_scenario(tmp: Path, logs: LogLines) -> Row:
    """A template vanishes from the API, then comes back with the same code."""
    row = Row("template deleted, re-created")
    with running(sim_options(templates=3)) as sim, FaultHarness(tmp, sim) as harness:
        good = good_start(row, harness)
        gone = sim.templates()[0].code
        kept = {k: v for k, v in template_counters(good).items() if ("template_code", gone) in k[1]}
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
    return row


def on_list_call(sim: Simulator, calls: int, action: Callable[[], None]) -> threading.Thread:
    """Run `action` as soon as the simulator has answered `calls` more ListChatappTemplate calls."""

    def listed() -> int:
        stats = sim.stats()["actions"].get("ListChatappTemplate", {})
        return int(stats.get("calls", 0))

    base = listed()

    def watch() -> None:
        with contextlib.suppress(WaitTimeout):  # the scenario's checks see what did not change
            wait_until(lambda: listed() >= base + calls, 30, "list calls", every=0.002)
            action()

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
        with FaultHarness(tmp, sim, list_qps=2) as harness:
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
    return row


def overlong_scenario(tmp: Path, logs: LogLines) -> Row:
    """The API refuses ranges longer than 2 days; a reload to max_range 3d meets it, and a
    reload back to 2d ends it."""
    row = Row("over-long range refused")
    options = sim_options(max_range_s=2 * 86400)
    with running(options) as sim, FaultHarness(tmp, sim, max_range="2d") as harness:
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
        problems = exact_problems(sim, after, origin()[1], secret=SECRET, chunk_ms=CHUNK_MS)
        if problems:
            row.fail("exact after recovery", "; ".join(problems[:3]))
        row.exact = not problems and value(after, "cams_up", account="main") == 1
        finish(row, harness)
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
        with FaultHarness(tmp, sim, state=state) as harness:
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
    return row


Scenario = Callable[[Path, LogLines], Row]
SCENARIOS: dict[str, Scenario] = {f.name: partial(simple_scenario, f) for f in SIMPLE} | {
    "template deleted, re-created": deleted_scenario,
    "paging changes between pages": paging_scenario,
    "over-long range refused": overlong_scenario,
    "state dir read-only": partial(state_scenario, kind="read-only"),
    "state dir full": partial(state_scenario, kind="full"),
    "mixed (all of the above at 10-15%)": mixed_scenario,
}


@pytest.fixture(scope="module")
def matrix() -> Iterator[list[Row]]:
    """The rows of this module's tests, printed as one table once they have run."""
    rows: list[Row] = []
    yield rows
    print("\nfault matrix\n" + render_matrix(rows))


@pytest.mark.parametrize("fault", list(SCENARIOS))
def test_fault(
    fault: str, tmp_path: Path, matrix: list[Row], capfd: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with captured_logs() as logs:
        try:
            row = SCENARIOS[fault](tmp_path, logs)
        except Exception as exc:  # record it: the matrix shows every fault
            row = Row(fault, exact=False)
            row.problems.append(
                f"scenario crashed: {type(exc).__name__}: {exc} {traceback.format_exc(limit=3)}"
            )
        if any(SECRET in line for line in logs.lines):
            row.problems.append("the secret appeared in a log line")
    matrix.append(row)
    print(f"\n{fault}: {time.monotonic() - started:.1f}s")
    for problem in row.problems:
        print(f"  {row.fault}: {problem}")
    out, err = capfd.readouterr()
    assert_no_secret(out + err, "the test output")
    print(out, end="")
    assert row.ok, f"{fault}: a bad outcome"
