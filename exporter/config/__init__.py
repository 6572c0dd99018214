"""The configuration file: YAML in, frozen dataclasses out, every problem named by its key path.

- `schema`: the frozen dataclasses and `ConfigError`;
- `env`: `${VAR}` / `${VAR:-default}` expansion;
- `values`: the generic checker (mappings, lists, scalars, durations, dates);
- `sections`: the checks of each section, building the `Config`;
- `senders`: the checks of an account's `sender_health` section;
- `loader`: YAML reading (dates kept as text, duplicate keys refused), `parse_config`,
  `load_config`;
- `credentials`: Alibaba's default credential chain.
"""

from exporter.config.credentials import default_credentials_provider
from exporter.config.loader import load_config, parse_config
from exporter.config.schema import (
    Account,
    Config,
    ConfigError,
    Filters,
    HealthStatusConfig,
    PhoneNumberMetricsConfig,
    PhoneNumbersConfig,
    PollConfig,
    SenderHealth,
    Space,
    StateConfig,
    StaticCredentials,
    TemplateSpec,
)

__all__ = [
    "Account",
    "Config",
    "ConfigError",
    "Filters",
    "HealthStatusConfig",
    "PhoneNumberMetricsConfig",
    "PhoneNumbersConfig",
    "PollConfig",
    "SenderHealth",
    "Space",
    "StateConfig",
    "StaticCredentials",
    "TemplateSpec",
    "default_credentials_provider",
    "load_config",
    "parse_config",
]
