"""Exporter configs for tests and benchmarks, written in one place.

    text = config_text(
        Account(sim.url, secret=SECRET, qps=20),
        poll={"interval": "10s", "lookback": "2d", "counters_since": since},
        state=tmp / "state.json",
    )

`Account` holds what a test varies about an account (the defaults are the simulator's key
`demo` / `demo-secret`, qps 50, list_qps 5, one space `cams-demo`); `poll` is the `poll:`
section as given. The text is YAML as a user writes it (block style, lists indented under their
key, one `key: value` a line), so a test may still edit a line of it (`timeout: 1s`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.config import Config, parse_config
from tests.kit.procs import ROOT

EXAMPLE = ROOT / "config.example.yaml"  # the documented config
SPACE = "cams-demo"
DEMO_KEY = ("demo", "demo-secret")


@dataclass(frozen=True)
class Account:
    """One `accounts:` entry. `credentials` replaces the key pair as a whole (a `${VAR}`, a
    misplaced secret); `qps`/`list_qps` None leave the key out; `extra` adds keys as given."""

    endpoint: str
    name: str = "main"
    key_id: str = DEMO_KEY[0]
    secret: str = DEMO_KEY[1]
    qps: float | None = 50
    list_qps: float | None = 5
    spaces: Sequence[Mapping[str, Any]] = ({"cust_space_id": SPACE},)
    credentials: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_yaml(self) -> dict[str, Any]:
        credentials = self.credentials
        if credentials is None:
            credentials = {"access_key_id": self.key_id, "access_key_secret": self.secret}
        out: dict[str, Any] = {
            "name": self.name,
            "endpoint": self.endpoint,
            "credentials": dict(credentials),
        }
        if self.qps is not None:
            out["qps"] = self.qps
        if self.list_qps is not None:
            out["list_qps"] = self.list_qps
        out["spaces"] = [dict(space) for space in self.spaces]
        out.update(self.extra)
        return out


def listed_space(units: Sequence[tuple[str, str]], space: str = SPACE) -> dict[str, Any]:
    """A space whose templates are listed, (code, language) each, with discovery off."""
    templates = [{"code": c, "language": lang, "type": "WHATSAPP"} for c, lang in units]
    return {"cust_space_id": space, "discover": False, "templates": templates}


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def config_text(
    *accounts: Account,
    poll: Mapping[str, Any] | None = None,
    state: Path | str | None = None,
) -> str:
    """The YAML text of a config with `accounts`, the `poll:` section and a state file."""
    document: dict[str, Any] = {}
    if poll:
        document["poll"] = {
            k: v.isoformat() if isinstance(v, dt.date) else v for k, v in poll.items()
        }
    if state is not None:
        document["state"] = {"path": str(state)}
    document["accounts"] = [account.as_yaml() for account in accounts]
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return text


def write_config(
    path: Path,
    *accounts: Account,
    poll: Mapping[str, Any] | None = None,
    state: Path | str | None = None,
) -> Path:
    """`config_text` written to `path`; the path."""
    path.write_text(config_text(*accounts, poll=poll, state=state), encoding="utf-8")
    return path


def parsed(
    *accounts: Account,
    poll: Mapping[str, Any] | None = None,
    state: Path | str | None = None,
) -> Config:
    """`config_text` parsed as the exporter parses it (no environment)."""
    return parse_config(config_text(*accounts, poll=poll, state=state), env={})


def days_back(days: int) -> tuple[dt.date, int]:
    """A counters origin `days` UTC days back: the date, and its midnight in ms."""
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
    midnight = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    return since, int(midnight.timestamp() * 1000)


def polled_config(endpoint: str, since: dt.date) -> Config:
    """One account with the demo key on `endpoint`, counters from `since`: lookback 3d,
    max_range 30d, timeout 5s (the variant, grouping and resilience tests' exporter)."""
    poll = {"interval": "10s", "lookback": "3d", "max_range": "30d", "timeout": "5s"}
    return parsed(Account(endpoint), poll={**poll, "counters_since": since})
