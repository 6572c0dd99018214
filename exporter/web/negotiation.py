"""Content negotiation for /metrics: which exposition format and whether to gzip.

Two formats are offered, each under a Content-Type that does not depend on the installed
client_python: the Prometheus text format 0.0.4 and OpenMetrics 1.0.0. The `Accept` header is
read as RFC 9110 says: each format takes the quality of the most specific media range that
matches it (`application/openmetrics-text;version=1.0.0` before `application/*` before `*/*`),
a range asking for a version we do not write does not match, `q=0` refuses, and the best
quality wins (a tie goes to the range listed first, then to the text format). A client that
accepts neither still gets the text format, which is what every Prometheus server can read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# (media type, versions we can answer for it; a range without a version matches any of them)
_TEXT = ("text/plain", frozenset({"0.0.4"}))
# OpenMetrics 0.0.1 and 1.0.0 are the same text for everything this exporter writes.
_OPENMETRICS = ("application/openmetrics-text", frozenset({"1.0.0", "0.0.1"}))


@dataclass(frozen=True)
class _Range:
    media: str  # "type/subtype", lower case, possibly with "*"
    params: tuple[tuple[str, str], ...]
    quality: float
    position: int


def _elements(value: str) -> Iterator[tuple[str, tuple[tuple[str, str], ...], float]]:
    """(lower-cased token, parameters other than q, q) of each element of an Accept-like
    header; an unparsable q counts as 0 (not acceptable)."""
    for element in value.split(","):
        token, *raw_params = element.split(";")
        token = token.strip().lower()
        if not token:
            continue
        quality = 1.0
        params = []
        for param in raw_params:
            name, _, text = param.partition("=")
            name = name.strip().lower()
            text = text.strip().strip('"')
            if name == "q":
                try:
                    quality = min(1.0, max(0.0, float(text)))
                except ValueError:
                    quality = 0.0
            elif name:
                params.append((name, text))
        yield token, tuple(params), quality


def _specificity(accepted: _Range, offer: tuple[str, frozenset[str]]) -> int:
    """How specifically `accepted` names `offer` (higher is more specific), -1 if not at all."""
    media, versions = offer
    kind, _, _ = media.partition("/")
    version = dict(accepted.params).get("version")
    if version is not None and version not in versions:
        return -1
    if accepted.media == media:
        return 3 if accepted.params else 2
    if accepted.media == f"{kind}/*":
        return 1
    if accepted.media == "*/*":
        return 0
    return -1


def _score(ranges: list[_Range], offer: tuple[str, frozenset[str]]) -> tuple[float, int]:
    """(quality, -position) the most specific matching range gives `offer`; (0, 0) if none."""
    best: tuple[int, _Range] | None = None
    for accepted in ranges:
        specificity = _specificity(accepted, offer)
        if specificity >= 0 and (best is None or specificity > best[0]):
            best = (specificity, accepted)
    if best is None:
        return 0.0, 0
    return best[1].quality, -best[1].position


def wants_openmetrics(accept: str) -> bool:
    """True when the `Accept` header (all values joined by commas) prefers OpenMetrics."""
    ranges = [
        _Range(media, params, quality, position)
        for position, (media, params, quality) in enumerate(_elements(accept))
    ]
    if not ranges:
        return False
    openmetrics = _score(ranges, _OPENMETRICS)
    text = _score(ranges, _TEXT)
    return openmetrics[0] > 0 and openmetrics > text


def accepts_gzip(accept_encoding: str) -> bool:
    """True when `Accept-Encoding` allows gzip (named, or by `*`, with q above 0)."""
    named: float | None = None
    wildcard: float | None = None
    for token, _, quality in _elements(accept_encoding):
        if token in ("gzip", "x-gzip"):
            named = quality if named is None else max(named, quality)
        elif token == "*":
            wildcard = quality
    if named is not None:
        return named > 0
    return wildcard is not None and wildcard > 0
