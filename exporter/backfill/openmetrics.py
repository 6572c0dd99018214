"""The backfill file: OpenMetrics text of the live exporter's families, with sample timestamps.

OpenMetrics wants every family's lines together and every series' points together, in time
order ("MetricFamilies MUST NOT be interleaved", "Metrics MUST NOT be interleaved"), and ends
with `# EOF`. Units are read one after the other, each adding a series to every family, so each
family is written to a temporary file of its own as units come, and the files are joined at
the end: memory holds one unit at a time, whatever the number of units and days. promtool
(2.42) reads the file whole, parses it once per block, and takes the points of each series in
this order.

    # HELP cams_template_messages_sent Template messages sent, as reported by ...
    # TYPE cams_template_messages_sent counter
    cams_template_messages_sent_total{account="main",space="s1",...} 0 1764028800.000
    cams_template_messages_sent_total{account="main",space="s1",...} 812 1764115200.000
    ...
    # EOF

The names, types, help texts and labels are the live exporter's (`exporter.publish.collector`;
a test keeps the two equal): the live counters continue these series.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, BinaryIO

from exporter.backfill.history import UnitHistory
from exporter.cams.model import NumberKey, TemplateMeta, UnitKey

LABELS = ("account", "space", "template_code", "language", "template_type")
NUMBER_LABELS = ("account", "space", "phone_number")


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of the file: its name, type, help text and label names."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    labels: tuple[str, ...]

    @property
    def sample_name(self) -> str:
        """The name its samples carry (`_total` for a counter)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


SENT = Family(
    "cams_template_messages_sent",
    "counter",
    "Template messages sent, as reported by GetChatappTemplateMetric, since the origin.",
    LABELS,
)
DELIVERED = Family(
    "cams_template_messages_delivered",
    "counter",
    "Template messages delivered to the recipient's device, since the origin.",
    LABELS,
)
READ = Family(
    "cams_template_messages_read",
    "counter",
    "Template messages read by the recipient, since the origin.",
    LABELS,
)
CLICKS = Family(
    "cams_template_button_clicks",
    "counter",
    "Clicks on a template's buttons, by button type and button text, since the origin.",
    (*LABELS, "button_type", "button"),
)
INFO = Family(
    "cams_template_info",
    "gauge",
    "Template metadata from ListChatappTemplate; the value is always 1.",
    (*LABELS, "template_name", "category", "audit_status"),
)
NUMBER_SENT = Family(
    "cams_phone_number_messages_sent",
    "counter",
    "Messages sent from the business phone number, since the origin.",
    NUMBER_LABELS,
)
NUMBER_DELIVERED = Family(
    "cams_phone_number_messages_delivered",
    "counter",
    "Messages from the number delivered to the recipient, since the origin.",
    NUMBER_LABELS,
)
NUMBER_READ = Family(
    "cams_phone_number_messages_read",
    "counter",
    "Messages from the number read by the recipient, since the origin.",
    NUMBER_LABELS,
)
FAMILIES = (SENT, DELIVERED, READ, CLICKS, INFO, NUMBER_SENT, NUMBER_DELIVERED, NUMBER_READ)


def escape(value: str) -> str:
    """A label value or help text escaped as OpenMetrics wants (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def timestamp(ms: int) -> str:
    """Unix seconds with milliseconds, exactly (no float rounding)."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def _selector(family: Family, values: Sequence[str], target: Sequence[tuple[str, str]] = ()) -> str:
    named = [*zip(family.labels, values, strict=True), *target]
    pairs = ",".join(f'{n}="{escape(v)}"' for n, v in named)
    return f"{family.sample_name}{{{pairs}}}"


def series_lines(
    family: Family,
    values: Sequence[str],
    points: Iterable[tuple[int, int]],
    target: Sequence[tuple[str, str]] = (),
) -> Iterator[str]:
    """One series' lines: `name{labels} value timestamp`, a line per (ms, value); `target`
    adds the labels Prometheus's scrape gives the live series (job, instance, ...)."""
    selector = _selector(family, values, target)
    for at_ms, value in points:
        yield f"{selector} {value} {timestamp(at_ms)}\n"


class BackfillFile:
    """The families' temporary files while units come, and the file they make at the end;
    every series carries the `target` labels too."""

    def __init__(self, target: Sequence[tuple[str, str]] = ()) -> None:
        self.target = tuple(target)
        self._dir = tempfile.TemporaryDirectory(prefix="cams-backfill-")
        self._parts: dict[str, IO[str]] = {}
        for family in FAMILIES:
            path = os.path.join(self._dir.name, family.name)
            self._parts[family.name] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self.series = 0
        self.samples = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def _write(self, family: Family, values: Sequence[str], points: list[tuple[int, int]]) -> None:
        if not points:
            return
        lines = series_lines(family, values, points, self.target)
        self._parts[family.name].writelines(lines)
        self.series += 1
        self.samples += len(points)
        first, last = points[0][0], points[-1][0]
        self.first_ms = first if self.first_ms is None else min(self.first_ms, first)
        self.last_ms = last if self.last_ms is None else max(self.last_ms, last)

    def add_unit(self, key: UnitKey, meta: TemplateMeta, history: UnitHistory) -> None:
        """A template-language unit's series: its counters and its info gauge."""
        labels = (key.account, key.space, key.template_code, key.language, key.template_type)
        points = history.points
        reads = [p for p in points if history.reads_at(p.at_ms)]
        self._write(SENT, labels, [(p.at_ms, p.counts.sent) for p in points])
        self._write(DELIVERED, labels, [(p.at_ms, p.counts.delivered) for p in points])
        self._write(READ, labels, [(p.at_ms, p.counts.read) for p in reads])
        for index, (kind, button) in enumerate(history.buttons):
            clicks = [(p.at_ms, p.counts.clicks[index][2]) for p in reads]
            self._write(CLICKS, (*labels, kind, button), clicks)
        self._write(INFO, (*labels, *meta), [(p.at_ms, 1) for p in points])

    def add_number(self, key: NumberKey, history: UnitHistory, with_reads: bool) -> None:
        """A phone number's counters (the read counter only where its answers carry reads)."""
        labels = (key.account, key.space, key.phone_number)
        points = history.points
        self._write(NUMBER_SENT, labels, [(p.at_ms, p.counts.sent) for p in points])
        self._write(NUMBER_DELIVERED, labels, [(p.at_ms, p.counts.delivered) for p in points])
        if with_reads:
            reads = [(p.at_ms, p.counts.read) for p in points if history.reads_at(p.at_ms)]
            self._write(NUMBER_READ, labels, reads)

    def write_to(self, out: BinaryIO) -> None:
        """The whole file: each family's header and lines in turn, then `# EOF`."""
        for family in FAMILIES:
            handle = self._parts[family.name]
            handle.flush()
            help_line = f"# HELP {family.name} {escape(family.help)}\n"
            out.write(f"{help_line}# TYPE {family.name} {family.kind}\n".encode())
            with open(handle.name, "rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
        out.write(b"# EOF\n")
        out.flush()

    def close(self) -> None:
        """Remove the temporary files."""
        for handle in self._parts.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._dir.cleanup()
