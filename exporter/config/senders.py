"""The `sender_health` section of an account: checks and defaults, one problem line per bad key.

```yaml
sender_health:             # absent (or false): templates only, as before; true: all defaults
  enabled: true            # default true once the block is there
  phone_numbers: {interval: 5m, qps: 1}             # QueryChatappPhoneNumbers, 0.1..10/s
  phone_number_metrics: {enabled: true, qps: 10}    # GetChatappPhoneNumberMetric, 0.1..50/s
  health_status: {enabled: true, interval: 15m, qps: 2, templates: true, max_error_series: 100}
```
The `qps` ceilings are the documented per-account limits of each action, e.g.
`accounts[0].sender_health.health_status.qps: must be between 0.1 and 5, got 8`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.config.schema import (
    HEALTH_QPS_LIMIT,
    NUMBER_METRIC_QPS_LIMIT,
    NUMBERS_QPS_LIMIT,
    HealthStatusConfig,
    PhoneNumberMetricsConfig,
    PhoneNumbersConfig,
    SenderHealth,
    Space,
)
from exporter.config.values import Checker, duration_text

_SENDER_KEYS = ("enabled", "phone_numbers", "phone_number_metrics", "health_status")
_NUMBERS_KEYS = ("interval", "qps")
_METRICS_KEYS = ("enabled", "interval", "qps")
_HEALTH_KEYS = ("enabled", "interval", "qps", "templates", "max_error_series")
_MIN_QPS = 0.1
_MIN_INTERVAL_S = 10.0
_MIN_HEALTH_INTERVAL_S = 60.0


class SenderHealthChecks(Checker):
    """The checks of `accounts[i].sender_health`, mixed into the config checker."""

    def sender_health(self, value: Any, path: str) -> SenderHealth | None:
        """The account's SenderHealth, or None when it did not opt in (or turned it off)."""
        if value is None or value is False:
            return None
        if value is True:
            return SenderHealth()
        node = self.mapping(value, path, _SENDER_KEYS, what="true, false or a mapping")
        if node is None:
            return None
        enabled = self.boolean(node, "enabled", path)
        health = SenderHealth(
            phone_numbers=self._phone_numbers(node.get("phone_numbers"), f"{path}.phone_numbers"),
            phone_number_metrics=self._metrics(
                node.get("phone_number_metrics"), f"{path}.phone_number_metrics"
            ),
            health_status=self._health(node.get("health_status"), f"{path}.health_status"),
        )
        return None if enabled is False else health

    def sender_spaces(
        self, health: SenderHealth | None, spaces: tuple[Space, ...], path: str
    ) -> None:
        """GetWhatsappHealthStatus needs a CustSpaceId: every space must name one."""
        if health is None or not health.health_status.enabled:
            return
        for index, space in enumerate(spaces):
            if not space.cust_space_id:
                self.add(
                    f"{path}.spaces[{index}].cust_space_id",
                    "required when sender_health.health_status is enabled "
                    "(GetWhatsappHealthStatus needs a CustSpaceId)",
                )

    def _interval(
        self, node: Mapping[Any, Any], path: str, minimum: float, default: float | None
    ) -> float | None:
        interval = self.duration(node, "interval", path)
        if interval is not None and interval < minimum:
            self.add(
                f"{path}.interval",
                f"must be at least {duration_text(minimum)}, got {duration_text(interval)}",
            )
            return default
        return default if interval is None else interval

    def _qps(self, node: Mapping[Any, Any], path: str, ceiling: float, default: float) -> float:
        qps = self.number(node, "qps", path, _MIN_QPS, ceiling)
        return default if qps is None else qps

    def _section(self, value: Any, path: str, keys: tuple[str, ...]) -> Mapping[Any, Any]:
        if value is None:
            return {}
        if isinstance(value, bool) and "enabled" in keys:
            return {"enabled": value}
        node = self.mapping(value, path, keys)
        return {} if node is None else node

    def _phone_numbers(self, value: Any, path: str) -> PhoneNumbersConfig:
        defaults = PhoneNumbersConfig()
        node = self._section(value, path, _NUMBERS_KEYS)
        interval = self._interval(node, path, _MIN_INTERVAL_S, defaults.interval_s)
        return PhoneNumbersConfig(
            interval_s=defaults.interval_s if interval is None else interval,
            qps=self._qps(node, path, NUMBERS_QPS_LIMIT, defaults.qps),
        )

    def _metrics(self, value: Any, path: str) -> PhoneNumberMetricsConfig:
        defaults = PhoneNumberMetricsConfig()
        node = self._section(value, path, _METRICS_KEYS)
        enabled = self.boolean(node, "enabled", path)
        return PhoneNumberMetricsConfig(
            enabled=defaults.enabled if enabled is None else enabled,
            interval_s=self._interval(node, path, _MIN_INTERVAL_S, None),
            qps=self._qps(node, path, NUMBER_METRIC_QPS_LIMIT, defaults.qps),
        )

    def _health(self, value: Any, path: str) -> HealthStatusConfig:
        defaults = HealthStatusConfig()
        node = self._section(value, path, _HEALTH_KEYS)
        enabled = self.boolean(node, "enabled", path)
        templates = self.boolean(node, "templates", path)
        cap = self.integer(node, "max_error_series", path, 0, 10_000)
        interval = self._interval(node, path, _MIN_HEALTH_INTERVAL_S, defaults.interval_s)
        return HealthStatusConfig(
            enabled=defaults.enabled if enabled is None else enabled,
            interval_s=defaults.interval_s if interval is None else interval,
            qps=self._qps(node, path, HEALTH_QPS_LIMIT, defaults.qps),
            templates=defaults.templates if templates is None else templates,
            max_error_series=defaults.max_error_series if cap is None else cap,
        )
