"""The two OpenSSL calls Python's `ssl` module does not expose, made through ctypes.

- `set_groups(context, names)`: the key exchange groups offered, in preference order
  (`SSL_CTX_set1_groups_list`); `ssl.SSLContext.set_ecdh_curve` takes a single curve.
- `accept_any_client_certificate(context)`: a verify callback that accepts whatever certificate
  the client presents (exporter-toolkit's RequestClientCert and RequireAnyClientCert, which ask
  for a certificate without checking it against a CA; Python's ssl has no such mode).

Both reach the `SSL_CTX *` inside an `ssl.SSLContext`, which CPython keeps right after the
object header. `ssl_ctx_pointer` checks that it found the real one (the verify mode and options
OpenSSL reports must be the context's own) before anything is written through it; when the
check fails (another Python build, OpenSSL linked statically...) the features that need it are
refused at start with one line, never applied to the wrong memory.
"""

from __future__ import annotations

import ctypes
import ssl
from collections.abc import Sequence
from functools import cache

_SSL_CTRL_SET_GROUPS_LIST = 92
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class OpenSSLUnavailable(Exception):
    """The ctypes route to OpenSSL cannot be used in this process."""


def _accept(_preverify_ok: int, _store: int | None) -> int:
    return 1


# Created once and never freed: OpenSSL keeps a pointer to it inside every context using it.
_ACCEPT_ANY = _VERIFY_CALLBACK(_accept)


@cache
def _libssl() -> ctypes.CDLL:
    import _ssl

    errors = []
    for name in (getattr(_ssl, "__file__", None), None):
        try:
            lib = ctypes.CDLL(name)
            lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
            lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
            lib.SSL_CTX_get_options.restype = ctypes.c_uint64
            lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
            lib.SSL_CTX_set_verify.restype = None
            lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
            lib.SSL_CTX_ctrl.restype = ctypes.c_long
            lib.SSL_CTX_ctrl.argtypes = [
                ctypes.c_void_p,
                ctypes.c_int,
                ctypes.c_long,
                ctypes.c_char_p,
            ]
            return lib
        except (OSError, AttributeError) as exc:
            errors.append(str(exc))
    raise OpenSSLUnavailable(f"cannot reach OpenSSL through ctypes ({'; '.join(errors)})")


def _verify_mode_bits(context: ssl.SSLContext) -> int:
    return {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}[context.verify_mode]


def ssl_ctx_pointer(context: ssl.SSLContext) -> int:
    """The address of the context's `SSL_CTX`, checked against what OpenSSL says of it."""
    lib = _libssl()
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise OpenSSLUnavailable("no SSL_CTX found in the ssl.SSLContext")
    if lib.SSL_CTX_get_options(pointer) != context.options:
        raise OpenSSLUnavailable("the SSL_CTX found does not match the ssl.SSLContext")
    if lib.SSL_CTX_get_verify_mode(pointer) & 3 != _verify_mode_bits(context):
        raise OpenSSLUnavailable("the SSL_CTX found does not match the ssl.SSLContext")
    return pointer


def accept_any_client_certificate(context: ssl.SSLContext) -> None:
    """Keep the context's verify mode, but accept any certificate the client presents."""
    pointer = ssl_ctx_pointer(context)
    lib = _libssl()
    lib.SSL_CTX_set_verify(pointer, lib.SSL_CTX_get_verify_mode(pointer), _ACCEPT_ANY)


def set_groups(context: ssl.SSLContext, names: Sequence[str]) -> bool:
    """Offer exactly `names` (OpenSSL group names) for key exchange; False if OpenSSL
    refuses the list (a name it does not know)."""
    pointer = ssl_ctx_pointer(context)
    value = ":".join(names).encode("ascii")
    return bool(_libssl().SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, value))
