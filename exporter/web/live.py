"""The web settings in force, re-read from the web config file when it changes.

exporter-toolkit re-reads its web config on every request, so a rotated certificate or a
changed user applies without a restart. `WatchedWebConfig` does the same, cheaply: on every new
connection and request it compares the modification time, size and inode of the config file and
of the certificate, key and CA files it names with what was loaded, and rebuilds the settings
only when one changed. A change that does not load (bad YAML, a key that does not match its
certificate, TLS switched on or off, which needs a restart) is logged once and the previous
settings stay in force.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from typing import Protocol

from exporter.web.auth import BasicAuth
from exporter.web.config import WebConfig, WebConfigError, load_web_config, validate_web_config
from exporter.web.requestlimit import RequestLimiter
from exporter.web.tls import build_ssl_context

LOG = logging.getLogger("cams_exporter.web")

_Signature = tuple[tuple[str, int, int, int] | tuple[str], ...]


@dataclass(frozen=True)
class WebSettings:
    """A web config made ready to serve with: TLS context, auth, request limit, headers."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None
    auth: BasicAuth | None
    limiter: RequestLimiter | None
    headers: tuple[tuple[str, str], ...]


def compile_web_config(config: WebConfig) -> WebSettings:
    """Check `config` and load what it names; raises WebConfigError (one line)."""
    validate_web_config(config)
    return WebSettings(
        config=config,
        ssl_context=build_ssl_context(config),
        auth=BasicAuth(config.basic_auth_users) if config.basic_auth_users else None,
        limiter=(
            RequestLimiter(config.rate_limit_interval_s, config.rate_limit_burst)
            if config.rate_limit_interval_s > 0
            else None
        ),
        headers=tuple(config.headers.items()),
    )


class WebSettingsSource(Protocol):
    """Where the server gets the settings for each connection and request."""

    def current(self) -> WebSettings:
        """The settings in force now."""
        ...


class FixedWebConfig:
    """Settings from a WebConfig given in code (tests, no config file)."""

    def __init__(self, config: WebConfig | None = None) -> None:
        self._settings = compile_web_config(config if config is not None else WebConfig())

    def current(self) -> WebSettings:
        """Always the same settings."""
        return self._settings


def _signature(paths: tuple[str, ...]) -> _Signature:
    result: list[tuple[str, int, int, int] | tuple[str]] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            result.append((path,))
        else:
            result.append((path, info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(result)


class WatchedWebConfig:
    """Settings from a web config file, reloaded when it or a file it names changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        signature = _signature((path,))
        config = load_web_config(path)
        signature += _signature(config.files)
        self._settings = compile_web_config(config)
        self._signature = signature
        self._last_error: str | None = None

    def _paths(self) -> tuple[str, ...]:
        return (self.path, *self._settings.config.files)

    def current(self) -> WebSettings:
        """The settings in force, reloaded first if a watched file changed since."""
        if _signature(self._paths()) == self._signature:
            return self._settings
        with self._lock:
            if _signature(self._paths()) != self._signature:
                self._reload()
            return self._settings

    def _reload(self) -> None:
        # Signatures are taken before the files are read: a change made while loading is
        # seen at the next check instead of being taken for what was loaded.
        seen = _signature(self._paths())
        signature = _signature((self.path,))
        try:
            config = load_web_config(self.path)
            signature += _signature(config.files)
            if config.tls_enabled != self._settings.config.tls_enabled:
                raise WebConfigError(
                    f"web config {self.path}: turning TLS on or off needs a restart"
                )
            settings = compile_web_config(config)
        except WebConfigError as error:
            self._signature = seen  # the same broken files are reported once, not per request
            if str(error) != self._last_error:
                LOG.error("web config not reloaded, keeping the previous one: %s", error)
            self._last_error = str(error)
            return
        self._settings, self._signature, self._last_error = settings, signature, None
        LOG.info("web config reloaded from %s", self.path)
