"""The CAMS actions the simulator answers, over its data model: parameters in, JSON bodies out.

`CamsApi` validates each action's parameters as the real API does (missing and invalid
parameters, the JSON `Page` of ListChatappTemplate, the longest Start..End range) and answers
from the deterministic data of `cams_simulator.data`. Templates can be deleted and restored
to play a template that disappears. The sender-health actions (`cams_simulator.senders`)
are registered into the same `answers` and `limits` tables. Nothing here knows about HTTP,
signatures or faults.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from cams_simulator.data import (
    UTC8_MS,
    Activity,
    DataModel,
    Horizon,
    TemplateDef,
    build_templates,
    shaped_rows,
)
from cams_simulator.options import GRANULARITIES, MAX_PAGE_SIZE, SimulatorOptions
from cams_simulator.params import int_param, text_param
from cams_simulator.senders import SenderApi
from cams_simulator.traffic import Clock
from cams_simulator.variants import Variants, parse_variants
from cams_simulator.wire import invalid, missing, request_id
from exporter.cams.actions import LIST_ACTION, METRIC_ACTION
from exporter.cams.model import DAY_MS, HALF_HOUR_MS, Template
from exporter.config.durations import format_duration

Answer = Callable[[Mapping[str, str]], dict[str, Any]]


def _page_number(page: Mapping[str, Any], key: str, default: int) -> int:
    raw = (
        page.get(key, page.get(key.lower(), default))
        if key[0].isupper()
        else page.get(key, default)
    )
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise invalid("Page", f"{key} must be an integer")
    try:
        return int(raw)
    except ValueError:
        raise invalid("Page", f"{key} must be an integer") from None


def parse_page(text: str | None, keys: tuple[str, str] = ("Index", "Size")) -> tuple[int, int]:
    """(index, size) from the JSON `Page` parameter of ListChatappTemplate (`keys`: the
    spelling of the index and size keys the server honours)."""
    if not text:
        return 1, 10
    try:
        page = json.loads(text)
    except ValueError:
        raise invalid("Page", 'expected JSON like {"Index":1,"Size":50}') from None
    if not isinstance(page, dict):
        raise invalid("Page", 'expected JSON like {"Index":1,"Size":50}')
    index = _page_number(page, keys[0], 1)
    size = _page_number(page, keys[1], 10)
    if index < 1:
        raise invalid("Page", f"Index must be >= 1, got {index}")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid("Page", f"Size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    return index, size


class CamsApi:
    """The simulated account: its templates and the answers of every action; thread-safe."""

    def __init__(self, options: SimulatorOptions, clock: Clock) -> None:
        self._options = options
        self._clock = clock
        self._defs = build_templates(options.templates, options.seed)
        self._by_code = {t.code: t for t in self._defs}
        self._rows = tuple(
            Template(
                code=t.code,
                name=t.name,
                language=language,
                category=t.category,
                audit_status="pass",
                template_type="WHATSAPP",
                last_update_ms=t.last_update_ms,
            )
            for t in self._defs
            for language in options.languages
        )
        activity = _activity(options, self._defs)
        self._model = DataModel(options.seed, UTC8_MS if options.shape == "utc8" else 0, activity)
        self._utc8_model = DataModel(options.seed, UTC8_MS, activity)
        self.variants = Variants(parse_variants(options.variants), options.seed)
        self._lock = threading.Lock()
        self._deleted: set[str] = set()
        self.senders = SenderApi(
            options,
            clock,
            self._defs,
            self._live,
            lambda t, lang, size, start, end: self._model.buckets(
                t, lang, size, start, end, self._horizon(self._model)
            ),
            lambda: self.variants,
            activity.sends,
        )
        self.answers: Mapping[str, Answer] = {
            LIST_ACTION: self.list_templates,
            METRIC_ACTION: self.template_metric,
            **self.senders.answers,
        }
        self.limits: Mapping[str, float] = {
            LIST_ACTION: options.list_qps_limit,
            METRIC_ACTION: options.qps_limit,
            **self.senders.limits,
        }

    # -- control ---------------------------------------------------------------------------

    def templates(self) -> tuple[Template, ...]:
        """The template-language rows ListChatappTemplate currently lists."""
        with self._lock:
            deleted = frozenset(self._deleted)
        return tuple(row for row in self._rows if row.code not in deleted)

    def delete_template(self, code: str) -> None:
        """Hide a template from listing and metrics (KeyError for an unknown code)."""
        if code not in self._by_code:
            raise KeyError(code)
        with self._lock:
            self._deleted.add(code)

    def restore_template(self, code: str) -> None:
        """Bring a deleted template back (KeyError for an unknown code)."""
        if code not in self._by_code:
            raise KeyError(code)
        with self._lock:
            self._deleted.discard(code)

    def set_variants(self, spec: str) -> None:
        """Replace the answer variants in force (ValueError on a bad spec)."""
        self.variants = Variants(parse_variants(spec), self._options.seed)

    def _live(self, code: str) -> TemplateDef | None:
        with self._lock:
            return None if code in self._deleted else self._by_code.get(code)

    # -- actions ---------------------------------------------------------------------------

    def list_templates(self, params: Mapping[str, str]) -> dict[str, Any]:
        """ListChatappTemplate: one page of the matching template-language rows."""
        index, size = parse_page(params.get("Page"), self.variants.page_keys())
        size = self.variants.page_size(size)
        name = params.get("Name", "").lower()
        exact = {
            "code": params.get("Code", ""),
            "language": params.get("Language", ""),
            "audit_status": params.get("AuditStatus", "").lower(),
            "template_type": params.get("TemplateType", "").upper(),
            "category": params.get("Category", "").upper(),
        }
        wanted = {key: value for key, value in exact.items() if value}
        rows = [
            row
            for row in self.templates()
            if name in row.name.lower()
            and all(getattr(row, key) == value for key, value in wanted.items())
        ]
        page = rows[(index - 1) * size : index * size]
        body = {
            "RequestId": request_id(),
            "Code": "OK",
            "Message": "success",
            "Success": True,
            "Total": len(rows),
            "ListTemplate": [
                {
                    "TemplateCode": row.code,
                    "TemplateName": row.name,
                    "Language": row.language,
                    "Category": row.category,
                    "AuditStatus": row.audit_status,
                    "TemplateType": row.template_type,
                    "Reason": "",
                    "LastUpdateTime": row.last_update_ms,
                }
                for row in page
            ],
        }
        return self.variants.list_body(body, len({row.code for row in rows}))

    def template_metric(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GetChatappTemplateMetric: the rows of one template (every language when `Language`
        is omitted) for [Start, End)."""
        code = text_param(params, "TemplateCode")
        granularity = params.get("Granularity") or "DAILY"
        if granularity not in GRANULARITIES:
            raise invalid("Granularity", f"expected DAILY or HALF_HOUR, got {granularity!r}")
        if granularity == "HALF_HOUR" and self.variants.on("half-hour-refused"):
            raise invalid("Granularity", "expected DAILY, got 'HALF_HOUR'")
        start = int_param(params, "Start")
        end = int_param(params, "End")
        if end <= start:
            raise invalid("End", "End must be greater than Start")
        max_range_ms = int(self._options.max_range_s * 1000)
        if end - start > max_range_ms:
            raise invalid(
                "End",
                f"the time range End - Start must not exceed "
                f"{format_duration(self._options.max_range_s)} ({max_range_ms} ms)",
            )
        template = self._live(code)
        template_type = params.get("TemplateType", "")
        language = params.get("Language", "")
        variants = self.variants
        if not language and variants.on("language-required"):
            raise missing("Language")
        every = not language or variants.on("other-languages")
        languages = [lang for lang in self._options.languages if every or lang == language]
        data: list[dict[str, Any]] = []
        if template is not None and template_type.upper() in ("", "WHATSAPP"):
            size = DAY_MS if granularity == "DAILY" else HALF_HOUR_MS
            model = self._utc8_model if variants.on("utc8-flip") else self._model
            for lang in languages:
                data.extend(self._unit_rows(template, lang, size, start, end, model))
            if not language and variants.on("language-summed"):
                data = _summed_languages(data)
            if variants.on("outside-row"):
                before = start - 5 * DAY_MS
                data.extend(
                    self._unit_rows(template, languages[0], DAY_MS, before, before + 1, model)
                )
            others = self._defs[(template.index + 1) % len(self._defs)]
            if others is not template and variants.on("other-templates"):
                data.extend(self._unit_rows(others, languages[0], size, start, end, model))
        body = {"RequestId": request_id(), "Code": "OK", "Message": "success", "Data": data}
        return variants.body(body)

    def _unit_rows(
        self,
        template: TemplateDef,
        language: str,
        size: int,
        start: int,
        end: int,
        model: DataModel,
    ) -> list[dict[str, Any]]:
        buckets = model.buckets(template, language, size, start, end, self._horizon(model))
        shape = "per-bucket" if model is self._utc8_model else self._options.shape
        rows = shaped_rows(template, language, buckets, size, shape, start, end)
        return self.variants.rows(rows, start, end) if self.variants.any() else rows

    def _horizon(self, model: DataModel) -> Horizon:
        anchor_ms = int(self._clock.anchor() * 1000)
        first_day = model.day_of(anchor_ms - int(self._options.history_s * 1000))
        static = self._options.static
        # static: the anchor day is complete; live: buckets up to the simulator's now
        now_ms = (
            model.day_start(model.day_of(anchor_ms) + 1) - 1
            if static
            else int(self._clock.data_now() * 1000)
        )
        return Horizon(
            now_ms=now_ms, first_day=first_day, static=static, read_reset=self._options.read_reset
        )


def _activity(options: SimulatorOptions, defs: tuple[TemplateDef, ...]) -> Activity:
    """The silent templates of `active_share` and the windows of `wakes`."""
    silent = frozenset(t.code for t in defs[options.active_templates :])
    windows = {
        defs[index].code: (int(start * 1000), int(min(stop, 2**53) * 1000))
        for index, start, stop in options.wakes
    }
    return Activity(silent, windows)


def _summed_languages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per bucket summing every language, without a Language (language-summed)."""
    by_bucket: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["Start"], row["End"])
        total = by_bucket.setdefault(
            key,
            {k: v for k, v in row.items() if k != "Language"}
            | {"SentCount": 0, "DeliveredCount": 0, "ReadCount": 0, "Cliented": []},
        )
        for name in ("SentCount", "DeliveredCount", "ReadCount"):
            total[name] += row[name]
        total["Cliented"] = total["Cliented"] + row["Cliented"]
    return list(by_bucket.values())
