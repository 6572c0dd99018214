"""Alibaba's default credential chain (the optional `credentials` extra).

`default_credentials_provider` returns a callable that yields fresh credentials at each call
from `alibabacloud_credentials` (environment variables, RRSA/OIDC, the CLI profile, the ECS RAM
role); temporary credentials rotate and the library refreshes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.config.schema import ConfigError, StaticCredentials

EXTRA_HINT = "'default' needs the optional extra: pip install 'cams-exporter[credentials]'"


def client_class() -> Any:
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
    found = client_class()
    if found is None:
        raise ConfigError(f"{key}: {EXTRA_HINT}")
    client = found()

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
