"""The configuration file: YAML in, frozen dataclasses out, every problem named by its key path.

`parse_config` reads the text with `yaml.safe_load`, expands `${VAR}` / `${VAR:-default}` in string
values (after parsing, so a secret full of YAML-special characters is safe), checks every key
and value, and either returns a `Config` or raises one `ConfigError` that lists *all* the problems
it found, each as `key.path: message` (e.g. `accounts[0].qps: must be between 1 and 50, got 80`).

Secrets (the values of the `credentials` fields) never appear in a message, an exception or a repr.

`check_config_main` is the body of `cams-exporter check-config PATH`: exit 0 with a summary, or
exit 2 with one line per problem.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml
from yaml.reader import ReaderError

from exporter.durations import format_duration, parse_duration

__all__ = [
    "Account",
    "Config",
    "ConfigError",
    "Filters",
    "PollConfig",
    "Space",
    "StateConfig",
    "StaticCredentials",
    "TemplateSpec",
    "check_config_main",
    "default_credentials_provider",
    "load_config",
    "parse_config",
]

DEFAULT_REGION = "ap-southeast-1"
DEFAULT_QPS = 40.0
DEFAULT_LIST_QPS = 4.0
GRANULARITIES = ("DAILY", "HALF_HOUR")
EXTRA_HINT = "'default' needs the optional extra: pip install 'cams-exporter[credentials]'"

_ROOT_KEYS = ("poll", "state", "accounts")
_POLL_KEYS = (
    "interval",
    "granularity",
    "lookback",
    "max_range",
    "counters_since",
    "discovery_interval",
    "timeout",
    "max_retries",
)
_STATE_KEYS = ("path",)
_ACCOUNT_KEYS = ("name", "region", "endpoint", "credentials", "qps", "list_qps", "spaces")
_CREDENTIAL_KEYS = ("access_key_id", "access_key_secret", "security_token")
_SPACE_KEYS = ("cust_space_id", "isv_code", "discover", "filters", "templates")
_FILTER_KEYS = ("template_type", "category", "audit_status", "name_regex")
_TEMPLATE_KEYS = ("code", "language", "type")

_ACCOUNT_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_ENV_INT = re.compile(r"[+-]?\d+")
_MIN_INTERVAL_S = 10.0
_MAX_SHOWN = 60


# --------------------------------------------------------------------------------------------------
# Public value objects


class ConfigError(Exception):
    """The configuration is unusable; `problems` holds one `key.path: message` line per problem."""

    problems: tuple[str, ...]

    def __init__(self, problems: str | Iterable[str]) -> None:
        items = [problems] if isinstance(problems, str) else list(problems)
        # One line per problem, always: a stray newline would break `check-config` output.
        self.problems = tuple(" ".join(p.splitlines()) for p in items) or ("invalid config",)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class StaticCredentials:
    """An AccessKey pair, with an STS token when the pair is temporary."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Filters:
    """Which discovered templates to keep (None = no constraint)."""

    template_type: str | None = None
    category: str | None = None
    audit_status: str | None = None
    name_regex: re.Pattern[str] | None = None


@dataclass(frozen=True)
class TemplateSpec:
    """A template-language listed explicitly in the config (polled with or without discovery)."""

    code: str
    language: str
    template_type: str = "WHATSAPP"


@dataclass(frozen=True)
class Space:
    """One CAMS space (`CustSpaceId`) of an account."""

    cust_space_id: str | None
    isv_code: str | None
    discover: bool
    filters: Filters
    templates: tuple[TemplateSpec, ...]

    @property
    def label(self) -> str:
        """The `space` label value: the cust_space_id, or "" when absent."""
        return self.cust_space_id or ""


@dataclass(frozen=True)
class Account:
    """One Alibaba Cloud account (or RAM user) and the spaces polled with it."""

    name: str
    region: str
    endpoint: str
    credentials: StaticCredentials | None  # None = Alibaba's default credential chain
    qps: float
    list_qps: float
    spaces: tuple[Space, ...]


@dataclass(frozen=True)
class PollConfig:
    """The polling schedule; every duration in seconds."""

    interval_s: float = 300.0
    granularity: str = "DAILY"
    lookback_s: float = 3 * 86400.0
    max_range_s: float = 30 * 86400.0
    counters_since: dt.date | None = None
    discovery_interval_s: float = 3600.0
    timeout_s: float = 10.0
    max_retries: int = 4


@dataclass(frozen=True)
class StateConfig:
    """Where the counters are persisted (None = not persisted)."""

    path: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    poll: PollConfig
    state: StateConfig
    accounts: tuple[Account, ...]


# --------------------------------------------------------------------------------------------------
# Environment expansion


class _Expanded(str):
    """A string value that came out of `${...}` expansion; `source` is the text as written."""

    source: str

    def __new__(cls, value: str, source: str) -> _Expanded:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


@dataclass(frozen=True)
class _Unresolved:
    """A string value whose expansion failed; reported when the checker reaches its key."""

    reason: str


def _expand(text: str, env: Mapping[str, str]) -> str | _Unresolved:
    """`${VAR}`, `${VAR:-default}` (default also when VAR is empty) and `$$` in one string value."""
    if "$" not in text:
        return text
    out: list[str] = []
    missing: list[str] = []
    referenced = False
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            i = dollar + 2
        elif following == "{":
            match = _VAR_REF.match(text, dollar)
            if match is None:
                return _Unresolved(
                    "invalid ${...} reference (write ${NAME}, ${NAME:-default}, or $$ for a $)"
                )
            referenced = True
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if default is not None and not value:
                value = default
            if value is None:
                missing.append(name)
                value = ""
            out.append(value)
            i = match.end()
        else:  # a lone `$` (e.g. the end anchor of a regex) stays as written
            out.append("$")
            i = dollar + 1
    if missing:
        names = sorted(set(missing))
        if len(names) == 1:
            return _Unresolved(f"environment variable {names[0]} is not set")
        return _Unresolved(f"environment variables {', '.join(names)} are not set")
    result = "".join(out)
    return _Expanded(result, text) if referenced else result


def _expand_tree(node: Any, env: Mapping[str, str], seen: dict[int, Any]) -> Any:
    """A copy of the parsed tree with every string value expanded (mapping keys are left alone).

    Shared nodes (YAML aliases) are expanded once, which also makes self-referencing aliases safe.
    """
    if isinstance(node, str):
        return _expand(node, env)
    if not isinstance(node, list | dict):
        return node
    done = seen.get(id(node))
    if done is not None:
        return done
    if isinstance(node, list):
        new_list: list[Any] = []
        seen[id(node)] = new_list
        new_list.extend(_expand_tree(item, env, seen) for item in node)
        return new_list
    new_dict: dict[Any, Any] = {}
    seen[id(node)] = new_dict
    for key, value in node.items():
        new_dict[key] = _expand_tree(value, env, seen)
    return new_dict


# --------------------------------------------------------------------------------------------------
# Describing values in messages


def _kind(value: Any) -> str:
    """What a value is, without showing it (used for secrets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, dt.datetime):
        return "a timestamp"
    if isinstance(value, dt.date):
        return "a date"
    return f"a value of type {type(value).__name__}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _show(value: Any) -> str:
    """A short, one-line rendering of a (non-secret) value for a message."""
    if isinstance(value, _Expanded):
        return f"{_clip(value.source)} (from the environment)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 4] + "...'"
    if isinstance(value, int | float):
        return _clip(repr(value))
    if isinstance(value, dt.date):  # also datetime
        return value.isoformat()
    return _kind(value)


def _number_text(value: float) -> str:
    value = float(value)
    if math.isfinite(value) and value.is_integer():
        return _clip(str(int(value)))
    return _clip(repr(value))


def _duration_text(seconds: float) -> str:
    seconds = float(seconds)
    if seconds.is_integer() and seconds >= 1:
        return format_duration(seconds)
    return f"{seconds:g}s"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------------------------------
# The checker


_ABSENT = object()


class _Checker:
    """Walks the expanded tree, collecting problems and building the dataclasses."""

    def __init__(self, source: str, today: dt.date) -> None:
        self.source = source
        self.today = today
        self.problems: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------------------

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path or self.source}: {message}")

    def unknown_key(self, path: str, key: Any, allowed: tuple[str, ...], secret: bool) -> None:
        close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        plain = isinstance(key, str) and _PLAIN_KEY.fullmatch(key) is not None
        if plain and (close or not secret):
            expected = "" if close else f" (expected one of: {', '.join(allowed)})"
            self.add(_child(path, key), f"unknown key{hint}{expected}")
        elif secret:  # the key itself might be a misplaced secret: never show it
            self.add(path, f"unknown key (expected one of: {', '.join(allowed)})")
        else:
            expected = "" if close else f" (expected one of: {', '.join(allowed)})"
            self.add(path, f"unknown key {_show(key)}{hint}{expected}")

    def mapping(
        self,
        value: Any,
        path: str,
        allowed: tuple[str, ...],
        *,
        secret: bool = False,
        what: str = "a mapping",
    ) -> dict[Any, Any] | None:
        """The mapping at `path` with unknown keys reported, or None (problem recorded)."""
        if isinstance(value, _Unresolved):
            self.add(path, value.reason)
            return None
        if not isinstance(value, dict):
            shown = _kind(value) if secret else _show(value)
            self.add(path, f"must be {what}, got {shown}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.unknown_key(path, key, allowed, secret)
        return value

    def items(self, value: Any, path: str, what: str) -> list[Any] | None:
        """The list at `path`, or None (problem recorded)."""
        if isinstance(value, _Unresolved):
            self.add(path, value.reason)
            return None
        if not isinstance(value, list):
            self.add(path, f"must be a list of {what}, got {_show(value)}")
            return None
        return value

    # -- scalars -----------------------------------------------------------------------------------
    # Each getter returns the value, or None when the key is absent/null or the value is invalid
    # (then a problem is recorded).

    def _raw(self, node: Mapping[Any, Any], key: str, path: str) -> Any:
        value = node.get(key, _ABSENT)
        if isinstance(value, _Unresolved):
            self.add(path, value.reason)
            return _ABSENT
        return _ABSENT if value is None else value

    def string(
        self,
        node: Mapping[Any, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        secret: bool = False,
    ) -> str | None:
        """A string; "" counts as absent for optional keys and as a problem for required ones."""
        full = _child(path, key)
        value = node.get(key, _ABSENT)
        if isinstance(value, _Unresolved):
            self.add(full, value.reason)
            return None
        if value is _ABSENT or value is None:
            if required:
                self.add(full, "required")
            return None
        if not isinstance(value, str):
            shown = _kind(value) if secret else _show(value)
            hint = " (quote it)" if isinstance(value, int | float) and not secret else ""
            self.add(full, f"must be a string, got {shown}{hint}")
            return None
        if not value.strip():
            if required:
                self.add(full, "must not be empty")
            return None
        return str(value)

    def number(
        self, node: Mapping[Any, Any], key: str, path: str, low: float, high: float
    ) -> float | None:
        full = _child(path, key)
        value = self._raw(node, key, full)
        if value is _ABSENT:
            return None
        number: float
        if isinstance(value, bool) or not isinstance(value, int | float | _Expanded):
            self.add(full, f"must be a number, got {_show(value)}")
            return None
        if isinstance(value, _Expanded):
            if not _ENV_NUMBER.fullmatch(value.strip()):
                self.add(full, f"must be a number, got {_show(value)}")
                return None
            number = float(value)
        else:
            try:
                number = float(value)
            except OverflowError:
                number = float("inf")
        if not low <= number <= high:
            shown = _number_text(number)
            self.add(
                full,
                f"must be between {_number_text(low)} and {_number_text(high)}, got {shown}",
            )
            return None
        return number

    def integer(
        self, node: Mapping[Any, Any], key: str, path: str, low: int, high: int
    ) -> int | None:
        full = _child(path, key)
        value = self._raw(node, key, full)
        if value is _ABSENT:
            return None
        number: int
        if isinstance(value, _Expanded) and _ENV_INT.fullmatch(value.strip()):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            self.add(full, f"must be an integer, got {_show(value)}")
            return None
        if not low <= number <= high:
            self.add(full, f"must be between {low} and {high}, got {_clip(str(number))}")
            return None
        return number

    def boolean(self, node: Mapping[Any, Any], key: str, path: str) -> bool | None:
        full = _child(path, key)
        value = self._raw(node, key, full)
        if value is _ABSENT:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, _Expanded) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.add(full, f"must be true or false, got {_show(value)}")
        return None

    def duration(self, node: Mapping[Any, Any], key: str, path: str) -> float | None:
        """A Prometheus-style duration string, in seconds, > 0."""
        full = _child(path, key)
        value = self._raw(node, key, full)
        if value is _ABSENT:
            return None
        example = "such as 30s, 5m, 1h, 3d"
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.add(
                full, f"must be a duration {example}, got {_show(value)} (add a unit, e.g. 300s)"
            )
            return None
        if not isinstance(value, str):
            self.add(full, f"must be a duration {example}, got {_show(value)}")
            return None
        try:
            seconds = parse_duration(value)
        except (ValueError, OverflowError):
            self.add(full, f"must be a duration {example}, got {_show(value)}")
            return None
        if not seconds > 0:
            self.add(full, f"must be greater than 0, got {_show(value)}")
            return None
        return seconds

    def date(self, node: Mapping[Any, Any], key: str, path: str) -> dt.date | None:
        """A calendar date (YAML date or ISO string), not after today (UTC)."""
        full = _child(path, key)
        value = self._raw(node, key, full)
        if value is _ABSENT:
            return None
        day: dt.date
        if isinstance(value, dt.datetime):
            self.add(full, f"must be a date (YYYY-MM-DD) without a time, got {_show(value)}")
            return None
        if isinstance(value, dt.date):
            day = value
        elif isinstance(value, str):
            try:
                day = dt.date.fromisoformat(value.strip())
            except ValueError:
                self.add(full, f"must be an ISO date (YYYY-MM-DD), got {_show(value)}")
                return None
        else:
            self.add(full, f"must be an ISO date (YYYY-MM-DD), got {_show(value)}")
            return None
        if day > self.today:
            self.add(full, f"must not be in the future, got {day.isoformat()}")
            return None
        return day

    # -- sections ----------------------------------------------------------------------------------

    def config(self, root: Any) -> Config:
        if root is None:
            self.add("", "the config is empty (expected a mapping with poll, state and accounts)")
            return Config(poll=PollConfig(), state=StateConfig(), accounts=())
        node = self.mapping(root, "", _ROOT_KEYS, what="a mapping with poll, state and accounts")
        if node is None:
            return Config(poll=PollConfig(), state=StateConfig(), accounts=())
        poll = self.poll(node.get("poll"))
        state = self.state(node.get("state"))
        accounts = self.accounts(node.get("accounts", _ABSENT))
        return Config(poll=poll, state=state, accounts=accounts)

    def poll(self, value: Any) -> PollConfig:
        defaults = PollConfig()
        if value is None:
            return defaults
        node = self.mapping(value, "poll", _POLL_KEYS)
        if node is None:
            return defaults
        interval = self.duration(node, "interval", "poll")
        if interval is not None and interval < _MIN_INTERVAL_S:
            self.add(
                "poll.interval",
                f"must be at least {_duration_text(_MIN_INTERVAL_S)}, "
                f"got {_duration_text(interval)}",
            )
        granularity = self.granularity(node)
        lookback = self.duration(node, "lookback", "poll")
        max_range = self.duration(node, "max_range", "poll")
        invalid = (node.get("lookback") is not None and lookback is None) or (
            node.get("max_range") is not None and max_range is None
        )
        effective_lookback = defaults.lookback_s if lookback is None else lookback
        effective_max_range = defaults.max_range_s if max_range is None else max_range
        if not invalid and effective_lookback > effective_max_range:
            self.add(
                "poll.lookback",
                f"must not exceed poll.max_range ({_duration_text(effective_max_range)}), "
                f"got {_duration_text(effective_lookback)}"
                + ("" if lookback is not None else " (the default)"),
            )
        since = self.date(node, "counters_since", "poll")
        discovery = self.duration(node, "discovery_interval", "poll")
        timeout = self.duration(node, "timeout", "poll")
        retries = self.integer(node, "max_retries", "poll", 0, 10)
        return PollConfig(
            interval_s=interval or defaults.interval_s,
            granularity=granularity or defaults.granularity,
            lookback_s=lookback or defaults.lookback_s,
            max_range_s=max_range or defaults.max_range_s,
            counters_since=since,
            discovery_interval_s=discovery or defaults.discovery_interval_s,
            timeout_s=timeout or defaults.timeout_s,
            max_retries=defaults.max_retries if retries is None else retries,
        )

    def granularity(self, node: Mapping[Any, Any]) -> str | None:
        value = self.string(node, "granularity", "poll")
        if value is None:
            return None
        normalized = value.strip().upper()
        if normalized not in GRANULARITIES:
            self.add(
                "poll.granularity",
                f"must be DAILY or HALF_HOUR, got {_show(node['granularity'])}",
            )
            return None
        return normalized

    def state(self, value: Any) -> StateConfig:
        if value is None:
            return StateConfig()
        node = self.mapping(value, "state", _STATE_KEYS)
        if node is None:
            return StateConfig()
        return StateConfig(path=self.string(node, "path", "state"))

    def accounts(self, value: Any) -> tuple[Account, ...]:
        if value is _ABSENT or value is None:
            self.add("accounts", "at least one account is required")
            return ()
        items = self.items(value, "accounts", "accounts")
        if items is None:
            return ()
        if not items:
            self.add("accounts", "at least one account is required")
            return ()
        accounts: list[Account] = []
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            path = f"accounts[{index}]"
            account = self.account(item, path)
            if account is None:
                continue
            if account.name:
                if account.name in first_index:
                    self.add(
                        f"{path}.name",
                        f"duplicate account name {account.name!r} "
                        f"(also accounts[{first_index[account.name]}])",
                    )
                else:
                    first_index[account.name] = index
            accounts.append(account)
        return tuple(accounts)

    def account(self, value: Any, path: str) -> Account | None:
        node = self.mapping(value, path, _ACCOUNT_KEYS)
        if node is None:
            return None
        name = self.string(node, "name", path, required=True)
        if name is not None and not _ACCOUNT_NAME.fullmatch(name):
            self.add(f"{path}.name", f"must match [a-zA-Z0-9_.-]+, got {_show(node['name'])}")
            name = None
        region = self.string(node, "region", path)
        if region is not None and not _REGION.fullmatch(region):
            self.add(
                f"{path}.region",
                f"must be a region id such as ap-southeast-1, got {_show(node['region'])}",
            )
            region = None
        region = region or DEFAULT_REGION
        endpoint = self.endpoint(node, path, region)
        credentials = self.credentials(node, path)
        qps = self.number(node, "qps", path, 1, 50)
        list_qps = self.number(node, "list_qps", path, 1, 5)
        spaces = self.spaces(node.get("spaces", _ABSENT), f"{path}.spaces")
        return Account(
            name=name or "",
            region=region,
            endpoint=endpoint,
            credentials=credentials,
            qps=DEFAULT_QPS if qps is None else qps,
            list_qps=DEFAULT_LIST_QPS if list_qps is None else list_qps,
            spaces=spaces,
        )

    def endpoint(self, node: Mapping[Any, Any], path: str, region: str) -> str:
        default = f"https://cams.{region}.aliyuncs.com"
        text = self.string(node, "endpoint", path)
        if text is None:
            return default
        normalized = _normalize_endpoint(text)
        if normalized is None:
            self.add(
                f"{path}.endpoint",
                "must be http://host[:port], https://host[:port] or host:port, "
                # user info may hold a password: never echo an endpoint that has any
                + ("got a URL with user info" if "@" in text else f"got {_show(node['endpoint'])}"),
            )
            return default
        return normalized

    def credentials(self, node: Mapping[Any, Any], path: str) -> StaticCredentials | None:
        full = f"{path}.credentials"
        expected = "'default' or a mapping with access_key_id and access_key_secret"
        value = node.get("credentials", _ABSENT)
        if value is _ABSENT or value is None:
            self.add(full, f"required: {expected}")
            return None
        if isinstance(value, _Unresolved):
            self.add(full, value.reason)
            return None
        if isinstance(value, str):
            if value.strip() == "default":
                if _credentials_client_class() is None:
                    self.add(full, EXTRA_HINT)
                return None
            # Never echo it: a secret pasted in the wrong place lands here.
            self.add(full, f"must be {expected}, got a string")
            return None
        mapping = self.mapping(value, full, _CREDENTIAL_KEYS, secret=True, what=expected)
        if mapping is None:
            return None
        key_id = self.string(mapping, "access_key_id", full, required=True, secret=True)
        secret = self.string(mapping, "access_key_secret", full, required=True, secret=True)
        token = self.string(mapping, "security_token", full, secret=True)
        return StaticCredentials(
            access_key_id=key_id or "", access_key_secret=secret or "", security_token=token
        )

    def spaces(self, value: Any, path: str) -> tuple[Space, ...]:
        if value is _ABSENT or value is None:
            self.add(path, "at least one space is required")
            return ()
        items = self.items(value, path, "spaces")
        if items is None:
            return ()
        if not items:
            self.add(path, "at least one space is required")
            return ()
        spaces: list[Space] = []
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            space = self.space(item, f"{path}[{index}]")
            if space is None:
                continue
            if space.label in first_index:
                what = repr(space.label) if space.label else "without cust_space_id"
                self.add(
                    f"{path}[{index}]",
                    f"duplicate space {what} (also spaces[{first_index[space.label]}])",
                )
            else:
                first_index[space.label] = index
            spaces.append(space)
        return tuple(spaces)

    def space(self, value: Any, path: str) -> Space | None:
        node = self.mapping(value, path, _SPACE_KEYS)
        if node is None:
            return None
        cust_space_id = self.string(node, "cust_space_id", path)
        isv_code = self.string(node, "isv_code", path)
        discover = self.boolean(node, "discover", path)
        filters = self.filters(node.get("filters"), f"{path}.filters")
        before = len(self.problems)
        templates = self.templates(node.get("templates"), f"{path}.templates")
        if discover is False and not templates and len(self.problems) == before:
            self.add(
                f"{path}.templates", "at least one template is required when discover is false"
            )
        return Space(
            cust_space_id=cust_space_id,
            isv_code=isv_code,
            discover=True if discover is None else discover,
            filters=filters,
            templates=templates,
        )

    def filters(self, value: Any, path: str) -> Filters:
        if value is None:
            return Filters()
        node = self.mapping(value, path, _FILTER_KEYS)
        if node is None:
            return Filters()
        pattern: re.Pattern[str] | None = None
        regex = self.string(node, "name_regex", path)
        if regex is not None:
            try:
                pattern = re.compile(regex)
            except (re.error, RecursionError, OverflowError, ValueError) as exc:
                self.add(f"{path}.name_regex", f"invalid regular expression: {exc}")
        return Filters(
            template_type=self.string(node, "template_type", path),
            category=self.string(node, "category", path),
            audit_status=self.string(node, "audit_status", path),
            name_regex=pattern,
        )

    def templates(self, value: Any, path: str) -> tuple[TemplateSpec, ...]:
        if value is None:
            return ()
        items = self.items(value, path, "templates ({code, language, type})")
        if items is None:
            return ()
        specs: list[TemplateSpec] = []
        first_index: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            node = self.mapping(item, item_path, _TEMPLATE_KEYS)
            if node is None:
                continue
            code = self.string(node, "code", item_path, required=True)
            language = self.string(node, "language", item_path, required=True)
            template_type = self.string(node, "type", item_path)
            if code is None or language is None:
                continue
            unit = (code, language)
            if unit in first_index:
                self.add(
                    item_path,
                    f"duplicate template {code!r} in language {language!r} "
                    f"(also templates[{first_index[unit]}])",
                )
                continue
            first_index[unit] = index
            specs.append(
                TemplateSpec(
                    code=code.strip(),
                    language=language.strip(),
                    template_type=(template_type or "WHATSAPP").strip().upper(),
                )
            )
        return tuple(specs)


def _normalize_endpoint(text: str) -> str | None:
    """`scheme://host[:port]` for an endpoint override, or None when it is not one."""
    value = text.strip()
    if not value or any(ch.isspace() for ch in value):
        return None
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if port is not None and not 1 <= port <= 65535:
        return None
    return f"{scheme}://{parts.netloc}"


# --------------------------------------------------------------------------------------------------
# Entry points


def _yaml_problem(exc: Exception, text: str, source: str) -> str:
    """One readable line for a YAML error, with its position (never the offending text)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context:
            what = f"{exc.problem} ({exc.context})"
        where = ""
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
            lines = text.splitlines()
            if mark.line < len(lines) and "${" in lines[mark.line]:
                what += "; inside {...} or [...] write ${...} values in quotes"
        return f"{source}: invalid YAML{where}: {what}"
    if isinstance(exc, ReaderError):
        return f"{source}: invalid YAML at character {exc.position}: {exc.reason}"
    if isinstance(exc, RecursionError):
        return f"{source}: invalid YAML: nested too deeply"
    if isinstance(exc, ValueError):  # e.g. an impossible date such as 2026-13-45
        return f"{source}: invalid YAML value: {exc}"
    return f"{source}: invalid YAML: {type(exc).__name__}"


def parse_config(
    text: str, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """The validated `Config` in `text`; ConfigError listing every problem otherwise.

    `env` (default `os.environ`) feeds `${VAR}` expansion; `source` names the document in problems
    that belong to no key (YAML syntax errors, an empty document).
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    try:
        tree = yaml.safe_load(text)
    except Exception as exc:  # any YAML failure becomes one readable line, never a traceback
        raise ConfigError(_yaml_problem(exc, text, source)) from None
    try:
        expanded = _expand_tree(tree, environment, {})
        checker = _Checker(source, dt.datetime.now(dt.UTC).date())
        config = checker.config(expanded)
    except RecursionError:
        raise ConfigError(f"{source}: the document is nested too deeply") from None
    if checker.problems:
        raise ConfigError(checker.problems)
    return config


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """`parse_config` on the file at `path`; an unreadable file is a one-line ConfigError."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    return parse_config(text, env, source=path)


def check_config_main(
    path: str, out: TextIO, err: TextIO, env: Mapping[str, str] | None = None
) -> int:
    """`cams-exporter check-config PATH`: 0 and a summary, or 2 and one line per problem."""
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return 2
    spaces = sum(len(account.spaces) for account in config.accounts)
    print(f"config OK: {len(config.accounts)} accounts, {spaces} spaces", file=out)
    return 0


# --------------------------------------------------------------------------------------------------
# Alibaba's default credential chain (optional extra)


def _credentials_client_class() -> Any:
    """`alibabacloud_credentials.client.Client`, or None when the optional extra is missing."""
    try:
        from alibabacloud_credentials.client import Client
    except ImportError:
        return None
    return Client


def default_credentials_provider(key: str = "credentials") -> Callable[[], StaticCredentials]:
    """A callable returning fresh credentials from Alibaba's default chain at each call.

    The chain (environment variables, OIDC/RRSA, the CLI profile and credentials files, the ECS
    RAM role) is the one `alibabacloud_credentials.client.Client()` builds; temporary credentials
    rotate, so call it for every request (the library caches and refreshes them). When no source
    yields credentials the call raises the library's `CredentialException`. `key` names the config
    key in the ConfigError raised when the optional extra is not installed.
    """
    client_class = _credentials_client_class()
    if client_class is None:
        raise ConfigError(f"{key}: {EXTRA_HINT}")
    client = client_class()

    def fetch() -> StaticCredentials:
        get_credential = getattr(client, "get_credential", None)
        if get_credential is not None:
            credential = get_credential()
            key_id = credential.access_key_id
            secret = credential.access_key_secret
            token = credential.security_token
        else:  # releases before get_credential()
            key_id = client.get_access_key_id()
            secret = client.get_access_key_secret()
            token = client.get_security_token()
        return StaticCredentials(
            access_key_id=str(key_id or ""),
            access_key_secret=str(secret or ""),
            security_token=str(token) if token else None,
        )

    return fetch
