"""`cams-exporter backfill --config.file PATH [--since DATE] [--until DATE] [--output FILE]`.

The config, the state file (read only) and the flags checked first (exit 2, one line naming the
key or flag); then each account in turn (`exporter.backfill.accounts`) adds its units and numbers
to the file; the file is put in place (or on stdout) once complete; at the end, one line per
thing left out and why, and a summary.

Exit codes: 0 when every unit and number was written (what the API no longer holds, such as
reads past its read window, is said on stderr and is not a failure); 1 when the API refused a
read, an answer could not be vouched for, a space could not be listed, or a unit has no origin
the live counters share: the file holds everything else, and stderr names what is missing; 2 on
a bad config, flags, output path or state file (nothing read); 130 when interrupted (Ctrl-C:
no file written).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from exporter.backfill.accounts import AccountRun, Ledger, Progress, account_client
from exporter.backfill.openmetrics import FAMILIES, BackfillFile
from exporter.backfill.origins import Span, midnight_ms, moment_text, read_state
from exporter.config import Config, ConfigError
from exporter.config.loader import load_or_report
from exporter.counting.store import CounterStore

EXPORTER_LABELS = frozenset({label for family in FAMILIES for label in family.labels})


@dataclass(frozen=True, slots=True)
class Request:
    """What the command was asked: the config, the dates, where to write (None or "-": stdout)."""

    config_path: str
    since: dt.date | None = None
    until: dt.date | None = None
    output: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # the scrape's target labels (job, instance, ...)


def _span(config: Config, request: Request, now_ms: int) -> Span:
    today = now_ms - now_ms % 86_400_000
    since = config.poll.counters_since
    return Span(
        since_ms=midnight_ms(request.since) if request.since else None,
        until_ms=midnight_ms(request.until) if request.until else today,
        counters_since_ms=midnight_ms(since) if since else None,
        granularity=config.poll.granularity,
        now_ms=now_ms,
    )


def _problem(request: Request, config: Config, store: CounterStore | None) -> str | None:
    """Why the request cannot be run as given (one line naming the key or flag), if so."""
    if request.since and request.until and request.since >= request.until:
        return f"--since {request.since}: must be before --until {request.until}"
    names = [name for name, _ in request.labels]
    for name in names:
        if name in EXPORTER_LABELS:
            return f"--label {name}: the exporter sets this label itself"
        if names.count(name) > 1:
            return f"--label {name}: given more than once"
    counted = store is not None and bool(store.units or store.numbers)
    if config.poll.counters_since is None and not counted:
        return (
            "poll.counters_since: not set, and no state file holds counters: the live counters "
            "will start at the exporter's first lookback window, which backfilled ones cannot "
            "continue; set poll.counters_since to a UTC date within the API's 90-day retention "
            "before the exporter's first start"
        )
    if counted and request.until is None:
        return (
            f"--until: required, since the state file {config.state.path} shows the exporter "
            "has already counted (give the UTC date it was first scraped; samples of the "
            "counters it holds end 8 days before it, when their days were final)"
        )
    return None


class Destination:
    """Where the file goes: stdout, or a temporary file beside FILE renamed into place."""

    def __init__(self, path: str | None, stdout: BinaryIO) -> None:
        self.path = None if path in (None, "-") else path
        self.stdout = stdout
        self._temp: str | None = None
        self._handle: BinaryIO | None = None
        if self.path is not None:
            directory = os.path.dirname(os.path.abspath(self.path))
            name = os.path.basename(self.path)
            fd, self._temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            self._handle = os.fdopen(fd, "wb")

    def write(self, content: BackfillFile) -> None:
        if self._handle is None:
            content.write_to(self.stdout)
            return
        content.write_to(self._handle)
        os.fsync(self._handle.fileno())
        self._handle.close()
        assert self._temp is not None and self.path is not None
        os.replace(self._temp, self.path)
        self._temp = None

    def discard(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)


def run_backfill(
    request: Request,
    stdout: BinaryIO,
    err: TextIO,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """The command's body; the exit code (module docstring)."""
    config = load_or_report(request.config_path, err, env)
    if config is None:
        return 2
    store: CounterStore | None = None
    if config.state.path:
        store, problem = read_state(config.state.path)
        if problem:
            print(problem, file=err)
            return 2
    problem = _problem(request, config, store)
    if problem:
        print(problem, file=err)
        return 2
    try:
        destination = Destination(request.output, stdout)
    except OSError as exc:
        print(f"--output {request.output}: cannot write there ({exc.strerror})", file=err)
        return 2
    span = _span(config, request, int(clock() * 1000))
    tally = Ledger()
    content = BackfillFile(request.labels)
    progress = Progress(err)
    stop = threading.Event()
    try:
        for index, account in enumerate(config.accounts):
            try:
                client = account_client(config, account, index, progress, stop)
            except ConfigError as exc:
                print(exc.problems[0], file=err)
                return 2
            run = AccountRun(config, account, client, span, store or CounterStore(), progress, stop)
            try:
                run.templates(content, tally)
                run.numbers(content, tally)
            finally:
                client.close()
        destination.write(content)
    finally:
        destination.discard()
        content.close()
    for line in tally.lines():
        print(f"cams-exporter backfill: {line}", file=err)
    if not {"job", "instance"} & {name for name, _ in request.labels}:
        print(
            "cams-exporter backfill: note: the series carry no job or instance label; Prometheus "
            "adds them to the series it scrapes, so pass them (--label job=... --label "
            "instance=...) for the live series to continue these",
            file=err,
        )
    where = destination.path or "stdout"
    between = ""
    if content.first_ms is not None and content.last_ms is not None:
        between = f" from {moment_text(content.first_ms)} to {moment_text(content.last_ms)}"
    print(
        f"cams-exporter backfill: wrote {content.series} series, {content.samples} samples"
        f"{between} of {tally.units} template-language units and {tally.numbers} phone "
        f"numbers to {where}",
        file=err,
    )
    return 1 if tally.failed else 0
