"""The config's sections: poll, state, accounts, credentials, spaces, filters, templates (and
an account's `sender_health`, checked by `exporter.config.senders`).

`ConfigChecker.config(tree)` walks the expanded YAML tree and builds the frozen `Config`, while
`Checker` (exporter.config.values) records one `key.path: message` line per problem, e.g.
`accounts[0].qps: must be between 1 and 50, got 80`. Every problem is found in one pass.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from exporter.config import credentials as credential_chain
from exporter.config.durations import parse_duration
from exporter.config.env import Unresolved
from exporter.config.schema import (
    DEFAULT_LIST_QPS,
    DEFAULT_QPS,
    DEFAULT_REGION,
    GRANULARITIES,
    READ_WINDOW_LOOKBACK_S,
    Account,
    Config,
    Filters,
    PollConfig,
    Space,
    StateConfig,
    StaticCredentials,
    TemplateSpec,
)
from exporter.config.senders import SenderHealthChecks
from exporter.config.values import ABSENT, duration_text, show

T = TypeVar("T")

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
    "idle_interval",
    "idle_after",
)
_STATE_KEYS = ("path",)
_ACCOUNT_KEYS = (
    "name",
    "region",
    "endpoint",
    "credentials",
    "qps",
    "list_qps",
    "spaces",
    "sender_health",
)
_CREDENTIAL_KEYS = ("access_key_id", "access_key_secret", "security_token")
_SPACE_KEYS = ("cust_space_id", "isv_code", "discover", "filters", "templates")
_FILTER_KEYS = ("template_type", "category", "audit_status", "name_regex")
_TEMPLATE_KEYS = ("code", "language", "type")

ACCOUNT_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_MIN_INTERVAL_S = 10.0


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


def config_warnings(config: Config) -> tuple[str, ...]:
    """What is valid but probably not meant, one `key: message` line each (`check-config`
    prints them and exits 0; the exporter logs them at start)."""
    warnings = []
    poll = config.poll
    if poll.granularity == "DAILY" and poll.lookback_s < READ_WINDOW_LOOKBACK_S:
        warnings.append(
            f"poll.lookback: {duration_text(poll.lookback_s)} is shorter than "
            f"{duration_text(READ_WINDOW_LOOKBACK_S)}, which covers Meta's 7-day read and click "
            "window: reads and clicks arriving later are never counted (docs/read-window.md)"
        )
    return tuple(warnings)


class ConfigChecker(SenderHealthChecks):
    """Walks the expanded tree, collecting problems and building the dataclasses."""

    def config(self, root: Any) -> Config:
        if root is None:
            self.add("", "the config is empty (expected a mapping with poll, state and accounts)")
            return Config(poll=PollConfig(), state=StateConfig(), accounts=())
        node = self.mapping(root, "", _ROOT_KEYS, what="a mapping with poll, state and accounts")
        if node is None:
            return Config(poll=PollConfig(), state=StateConfig(), accounts=())
        poll = self.poll(node.get("poll"))
        state = self.state(node.get("state"))
        accounts = self.accounts(node.get("accounts", ABSENT))
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
                f"must be at least {duration_text(_MIN_INTERVAL_S)}, got {duration_text(interval)}",
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
                f"must not exceed poll.max_range ({duration_text(effective_max_range)}), "
                f"got {duration_text(effective_lookback)}"
                + ("" if lookback is not None else " (the default)"),
            )
        since = self.date(node, "counters_since", "poll")
        discovery = self.duration(node, "discovery_interval", "poll")
        timeout = self.duration(node, "timeout", "poll")
        retries = self.integer(node, "max_retries", "poll", 0, 10)
        idle_interval = self.duration(node, "idle_interval", "poll")
        effective_interval = interval or defaults.interval_s
        if idle_interval is not None and idle_interval < effective_interval:
            self.add(
                "poll.idle_interval",
                f"must be at least poll.interval ({duration_text(effective_interval)}), "
                f"got {duration_text(idle_interval)}",
            )
        return PollConfig(
            interval_s=interval or defaults.interval_s,
            granularity=granularity or defaults.granularity,
            lookback_s=lookback or defaults.lookback_s,
            max_range_s=max_range or defaults.max_range_s,
            counters_since=since,
            discovery_interval_s=discovery or defaults.discovery_interval_s,
            timeout_s=timeout or defaults.timeout_s,
            max_retries=defaults.max_retries if retries is None else retries,
            # unset: 1h, or poll.interval when that is longer
            idle_interval_s=idle_interval or max(defaults.idle_interval_s, effective_interval),
            idle_after_s=self.idle_after(node, defaults.idle_after_s),
        )

    def idle_after(self, node: Mapping[Any, Any], default: float | None) -> float | None:
        """`poll.idle_after`: a duration, or `0` / `off` (YAML's `off` is false) to read every
        unit every cycle (None)."""
        value = node.get("idle_after")
        if value is None:
            return default
        if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return None
        if isinstance(value, str):
            with contextlib.suppress(ValueError, OverflowError):
                if parse_duration(value) == 0:
                    return None  # 0, 0s, 0m...
        seconds = self.duration(node, "idle_after", "poll")
        return default if seconds is None else seconds

    def granularity(self, node: Mapping[Any, Any]) -> str | None:
        value = self.string(node, "granularity", "poll")
        if value is None:
            return None
        normalized = value.strip().upper()
        if normalized not in GRANULARITIES:
            self.add(
                "poll.granularity",
                f"must be DAILY or HALF_HOUR, got {show(node['granularity'])}",
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
        return self.unique_items(
            value,
            "accounts",
            "account",
            self.account,
            lambda account: account.name or None,
            lambda account, first: (
                ".name",
                f"duplicate account name {account.name!r} (also accounts[{first}])",
            ),
        )

    def unique_items(
        self,
        value: Any,
        path: str,
        what: str,
        read: Callable[[Any, str], T | None],
        key: Callable[[T], str | None],
        duplicate: Callable[[T, int], tuple[str, str]],
    ) -> tuple[T, ...]:
        """The items of the non-empty list at `path` that `read` takes; an item whose `key`
        an earlier one has is kept and reported (`duplicate`: the path suffix and message,
        given the earlier index)."""
        if value is ABSENT or value is None:
            self.add(path, f"at least one {what} is required")
            return ()
        items = self.items(value, path, f"{what}s")
        if items is None:
            return ()
        if not items:
            self.add(path, f"at least one {what} is required")
            return ()
        taken: list[T] = []
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            found = read(item, item_path)
            if found is None:
                continue
            name = key(found)
            if name is not None and name in first_index:
                suffix, message = duplicate(found, first_index[name])
                self.add(item_path + suffix, message)
            elif name is not None:
                first_index[name] = index
            taken.append(found)
        return tuple(taken)

    def account(self, value: Any, path: str) -> Account | None:
        node = self.mapping(value, path, _ACCOUNT_KEYS)
        if node is None:
            return None
        name = self.string(node, "name", path, required=True)
        if name is not None and not ACCOUNT_NAME.fullmatch(name):
            self.add(f"{path}.name", f"must match [a-zA-Z0-9_.-]+, got {show(node['name'])}")
            name = None
        region = self.string(node, "region", path)
        if region is not None and not REGION.fullmatch(region):
            self.add(
                f"{path}.region",
                f"must be a region id such as ap-southeast-1, got {show(node['region'])}",
            )
            region = None
        region = region or DEFAULT_REGION
        endpoint = self.endpoint(node, path, region)
        credentials = self.credentials(node, path)
        qps = self.number(node, "qps", path, 1, 50)
        list_qps = self.number(node, "list_qps", path, 1, 5)
        spaces = self.spaces(node.get("spaces", ABSENT), f"{path}.spaces")
        sender_health = self.sender_health(node.get("sender_health"), f"{path}.sender_health")
        self.sender_spaces(sender_health, spaces, path)
        return Account(
            name=name or "",
            region=region,
            endpoint=endpoint,
            credentials=credentials,
            qps=DEFAULT_QPS if qps is None else qps,
            list_qps=DEFAULT_LIST_QPS if list_qps is None else list_qps,
            spaces=spaces,
            sender_health=sender_health,
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
                + ("got a URL with user info" if "@" in text else f"got {show(node['endpoint'])}"),
            )
            return default
        return normalized

    def credentials(self, node: Mapping[Any, Any], path: str) -> StaticCredentials | None:
        full = f"{path}.credentials"
        expected = "'default' or a mapping with access_key_id and access_key_secret"
        value = node.get("credentials", ABSENT)
        if value is ABSENT or value is None:
            self.add(full, f"required: {expected}")
            return None
        if isinstance(value, Unresolved):
            self.add(full, value.reason)
            return None
        if isinstance(value, str):
            if value.strip() == "default":
                if credential_chain.client_class() is None:
                    self.add(full, credential_chain.EXTRA_HINT)
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
        return self.unique_items(
            value,
            path,
            "space",
            self.space,
            lambda space: space.label,
            lambda space, first: (
                "",
                f"duplicate space {repr(space.label) if space.label else 'without cust_space_id'}"
                f" (also spaces[{first}])",
            ),
        )

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
