"""The probe's report: readable text or JSON, safe to share.

No secret ever reaches a report (the probe never holds one in a finding); `--redact` also masks
template codes and names (and phone numbers, should a finding carry one) with stable
placeholders (`template-1`, ...), so a report can be pasted into an issue as it is. `run_probe`
is the body of `cams-exporter probe`: exit 0 when the calls could be made, 1 when the API
refused them (the reason in one line), 2 on bad config.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TextIO
from urllib.parse import urlsplit

from exporter.cams.actions import LIST_ACTION, METRIC_ACTION
from exporter.cams.client import CamsClient, CredentialSource, RequestEvent
from exporter.cams.ratelimit import RateLimiter
from exporter.cams.retry import RetryPolicy
from exporter.config import Account, Config, ConfigError, default_credentials_provider
from exporter.config.loader import load_or_report
from exporter.probe.findings import AccountReport
from exporter.probe.questions import Prober

_PHONE = re.compile(r"\+?\d{8,15}")


class Redactor:
    """Replaces the given texts (and phone numbers) with stable placeholders."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._names: dict[str, str] = {}

    def add(self, text: str, kind: str) -> None:
        if self.enabled and text and text not in self._names:
            count = sum(1 for v in self._names.values() if v.startswith(kind)) + 1
            self._names[text] = f"{kind}-{count}"

    def __call__(self, text: str) -> str:
        if not self.enabled:
            return text
        for original in sorted(self._names, key=len, reverse=True):
            text = text.replace(original, self._names[original])
        return _PHONE.sub("phone-number", text)


def _host(endpoint: str) -> str:
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    return parts.hostname or ""


def render_text(reports: Sequence[AccountReport], redact: Redactor) -> str:
    """The report as readable text."""
    lines: list[str] = []
    for report in reports:
        lines.append(f"# Account {report.account} ({_host(report.endpoint)})")
        if report.refused:
            lines.append(f"The API refused the probe's calls: {report.refused}")
        if report.template:
            languages = ", ".join(report.languages)
            lines.append(f"Template probed: {report.template} ({languages})")
        lines.append(f"Calls made: {report.calls}")
        lines.append("")
        for finding in report.findings:
            lines.append(f"## {finding.question}")
            lines.append(f"- Answer: {finding.answer}")
            lines.append(f"- Evidence: {finding.evidence}")
            if finding.exporter:
                lines.append(f"- The exporter: {finding.exporter}")
            lines.append("")
        lines.append("## Recommended settings")
        for key, value in report.recommended.items():
            lines.append(f"- poll.{key}: {value}")
        lines.append("")
    return redact("\n".join(lines))


def render_json(reports: Sequence[AccountReport], redact: Redactor) -> str:
    """The report as one JSON document."""
    doc = {"accounts": [dict(asdict(r), endpoint=_host(r.endpoint)) for r in reports]}
    return redact(json.dumps(doc, indent=2, default=str))


def _client_factory(
    config: Config, account: Account, index: int
) -> Callable[[Callable[[RequestEvent], None]], CamsClient]:
    credentials: CredentialSource
    if account.credentials is None:
        credentials = default_credentials_provider(f"accounts[{index}].credentials")
    else:
        credentials = account.credentials

    def build(observer: Callable[[RequestEvent], None]) -> CamsClient:
        limiters = {
            METRIC_ACTION: RateLimiter(account.qps, min_rate=0.5),
            LIST_ACTION: RateLimiter(account.list_qps, min_rate=0.2),
        }
        return CamsClient(
            endpoint=account.endpoint,
            credentials=credentials,
            limiters=limiters,
            timeout_s=config.poll.timeout_s,
            retry=RetryPolicy(max_retries=2),
            observer=observer,
            pool_size=4,
            stop=threading.Event(),
        )

    return build


def run_probe(
    path: str,
    account_name: str | None,
    template: str | None,
    as_json: bool,
    redact: bool,
    out: TextIO,
    err: TextIO,
    env: Mapping[str, str] | None = None,
) -> int:
    """`cams-exporter probe ...`: 0, 1 (the API refused, one line why) or 2 (bad config)."""
    config = load_or_report(path, err, env)
    if config is None:
        return 2
    accounts = [(i, a) for i, a in enumerate(config.accounts) if account_name in (None, a.name)]
    if not accounts:
        known = ", ".join(a.name for a in config.accounts)
        print(f"--account {account_name}: no such account (known: {known})", file=err)
        return 2
    reports: list[AccountReport] = []
    redactor = Redactor(redact)
    for index, account in accounts:
        try:
            factory = _client_factory(config, account, index)
        except ConfigError as exc:
            print(exc.problems[0], file=err)
            return 2
        prober = Prober(account, config.poll, factory, template=template)
        try:
            report = prober.run()
        finally:
            prober.client.close()
        _learn_names(redactor, report, prober)
        reports.append(report)
    print(render_json(reports, redactor) if as_json else render_text(reports, redactor), file=out)
    refused = [r for r in reports if r.refused]
    if refused:
        print(
            f"cams-exporter probe: the API refused the calls of account {refused[0].account}: "
            f"{refused[0].refused}",
            file=err,
        )
        return 1
    return 0


def _learn_names(redactor: Redactor, report: AccountReport, prober: Prober) -> None:
    """Register every template code and name the probe met, for --redact."""
    redactor.add(report.template, "template")
    for name in prober.seen_names:
        redactor.add(name, "name")
    for code in prober.seen_codes:
        redactor.add(code, "template")
