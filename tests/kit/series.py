"""Reading an exposition as samples: `Series` maps (sample name, sorted labels) to the value,
as client_python's parser reads a scrape."""

from __future__ import annotations

import itertools

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Series = dict[tuple[str, Labels], float]

SENT = "cams_template_messages_sent_total"


def parse(text: str) -> Series:
    """Every sample of a text-format exposition."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def template_counters(series: Series) -> Series:
    """The per-template counters (`cams_template_*_total`)."""
    return {
        k: v
        for k, v in series.items()
        if k[0].startswith("cams_template_") and k[0].endswith("_total")
    }


def nonzero(series: Series) -> Series:
    """The template counters above zero."""
    return {k: v for k, v in template_counters(series).items() if v > 0}


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
