"""Answers the exporter could not take at face value: counted, logged once, shown.

`AnomalyLog.report` counts an anomaly in `cams_api_answer_anomalies_total{account,action,kind}`,
logs it at warn the first time it is seen for its subject (a template-language, or a space for
listings) and kind, saying what was expected and what came, and keeps the most recent ones for
the status page. One log lives as long as the exporter (across reloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from exporter.cams.errors import AnomalousAnswer
from exporter.cams.instruments import Instruments
from exporter.cams.model import NumberKey, UnitKey

log = logging.getLogger("cams_exporter.answers")

_KEEP = 100


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """One anomaly, as the status page shows it."""

    account: str
    action: str
    kind: str
    detail: str
    space: str
    template: str
    language: str
    at: float  # unix seconds, the latest time it was seen
    count: int  # times seen for this subject and kind


class AnomalyLog:
    """Counts, logs once per subject and kind, and remembers recent anomalies; thread-safe."""

    def __init__(self, instruments: Instruments, clock: Callable[[], float] = time.time) -> None:
        self._instruments = instruments
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str, str, str, str], AnomalyRecord] = {}
        self._order: deque[tuple[str, str, str, str, str, str]] = deque()

    def report(
        self,
        account: str,
        action: str,
        anomaly: AnomalousAnswer,
        *,
        space: str = "",
        template: str = "",
        language: str = "",
    ) -> None:
        """One anomalous answer: counted always, logged the first time for its subject."""
        kind, detail = anomaly.kind, anomaly.detail
        self._instruments.anomaly(account, action, kind)
        key = (account, action, space, template, language, kind)
        with self._lock:
            before = self._seen.get(key)
            count = 1 if before is None else before.count + 1
            self._seen[key] = AnomalyRecord(
                account, action, kind, detail, space, template, language, self._clock(), count
            )
            if before is None:
                self._order.append(key)
                while len(self._order) > _KEEP:
                    self._seen.pop(self._order.popleft(), None)
        if before is None:
            fields = {"account": account, "action": action, "kind": kind}
            if space:
                fields["space"] = space
            if template:
                fields["template"] = template
            if language:
                fields["language"] = language
            log.warning(
                "answer not applied, the last good counts stay (logged once): %s",
                detail,
                extra=fields,
            )

    def report_for(self, key: UnitKey | NumberKey, action: str, anomaly: AnomalousAnswer) -> None:
        """`report` for the subject a series key names: a template-language or a phone number."""
        if isinstance(key, NumberKey):
            template, language = key.phone_number, ""
        else:
            template, language = key.template_code, key.language
        self.report(
            key.account, action, anomaly, space=key.space, template=template, language=language
        )

    def recent(self) -> tuple[AnomalyRecord, ...]:
        """The anomalies kept for the status page, newest first."""
        with self._lock:
            return tuple(sorted(self._seen.values(), key=lambda r: r.at, reverse=True))
