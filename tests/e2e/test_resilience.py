"""The background work cannot die: a crash in a poll, a publish, a render or a state write is
caught, counted in cams_exporter_internal_errors_total, logged once at error with its traceback,
and the exporter goes on serving the last good snapshot."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from cams_simulator import SimulatorOptions
from tests.kit.configs import days_back
from tests.kit.inproc import PolledExporter, polled_exporter
from tests.kit.sim import running

SINCE, _ = days_back(5)
SMALL = SimulatorOptions(templates=2, static=True)


def internal_errors(polled: PolledExporter, where: str) -> float:
    series = polled.scrape()
    return series[("cams_exporter_internal_errors_total", (("where", where),))]


def tracebacks(caplog: pytest.LogCaptureFixture, where: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and r.getMessage().startswith(where) and r.exc_info
    ]


def test_a_render_crash_keeps_the_last_good_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    with running(SMALL) as sim, polled_exporter(sim.url, SINCE) as polled:
        polled.cycle()
        good = polled.scrape()
        scheduler = polled.exporter.scheduler
        before = scheduler.snapshot
        healthy = scheduler.on_publish

        def broken(_snapshot: object) -> None:
            raise UnicodeEncodeError("utf-8", "\ud83d", 0, 1, "surrogates not allowed")

        scheduler.on_publish = broken
        with caplog.at_level(logging.DEBUG, logger="cams_exporter"):
            for _ in range(3):
                assert scheduler.publish() is before
        assert len(tracebacks(caplog, "render failed")) == 1  # logged once
        assert scheduler.snapshot is before
        after = polled.scrape()
        sent = [k for k in good if k[0] == "cams_template_messages_sent_total"]
        assert sent and all(after[k] == good[k] for k in sent)
        assert internal_errors(polled, "render") == 3
        scheduler.on_publish = healthy
        assert scheduler.publish() is not before


def test_a_crashing_poll_cycle_leaves_the_thread_running(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with running(SMALL) as sim, polled_exporter(sim.url, SINCE) as polled:
        scheduler = polled.exporter.scheduler
        account = scheduler.accounts[0]
        cycles: list[int] = []
        published = threading.Event()

        def crash(stop: threading.Event, workers: int) -> bool:
            cycles.append(workers)
            if len(cycles) >= 2:
                stop.set()  # end the loop after the second crash
            raise RuntimeError("a bug in a cycle")

        account.run_cycle = crash  # type: ignore[method-assign]
        original = scheduler.publish

        def publish(*args: Any, **kwargs: Any) -> object:
            published.set()
            return original(*args, **kwargs)

        scheduler.publish = publish  # type: ignore[method-assign]
        poll = dataclasses.replace(scheduler.config.poll, interval_s=0.05)
        scheduler.config = dataclasses.replace(scheduler.config, poll=poll)
        with caplog.at_level(logging.ERROR, logger="cams_exporter"):
            thread = threading.Thread(
                target=scheduler._run_account, args=(account, threading.Event())
            )
            thread.start()
            thread.join(30)
        assert not thread.is_alive() and len(cycles) == 2
        assert published.is_set()  # the loop went on to publish after the first crash
        records = tracebacks(caplog, "poll failed")
        assert len(records) == 1 and "a bug in a cycle" in str(records[0].exc_info)
        assert internal_errors(polled, "poll") == 2


def test_a_state_write_that_raises_is_counted_not_fatal(tmp_path: Path) -> None:
    with running(SMALL) as sim, polled_exporter(sim.url, SINCE) as polled:
        scheduler = polled.exporter.scheduler
        scheduler.state_path = str(tmp_path / "state.json")

        def broken(path: str) -> None:
            raise ValueError("cannot serialise")

        scheduler.store.save = broken  # type: ignore[method-assign]
        polled.cycle()
        scheduler.publish(save=True)
        series = polled.scrape()
        assert series[("cams_state_writes_total", (("result", "error"),))] >= 1
