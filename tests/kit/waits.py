"""Waiting for a condition instead of sleeping: `wait_until` and `wait_http`.

Every wait of the tests and benchmarks goes through `wait_until`: it calls a predicate every
`every` seconds until it returns something truthy (which it hands back) or `timeout` seconds
pass, then fails naming `what` and the last value or error seen. A sleep stays only where time
itself is what is measured (a window of a benchmark, "nothing happens for a second").
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

T = TypeVar("T")

# What a predicate may raise while the thing it waits for is not there yet.
NOT_YET: tuple[type[BaseException], ...] = (
    OSError,
    http.client.HTTPException,
    requests.RequestException,
    ValueError,
    KeyError,
)


class WaitTimeout(AssertionError):
    """A condition did not hold in time (an AssertionError: pytest shows it as a failure)."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    every: float = 0.05,
    ignore: tuple[type[BaseException], ...] = NOT_YET,
) -> T:
    """The first truthy value of `predicate()`, called every `every` s for at most `timeout` s.

    Exceptions of the `ignore` kinds count as "not yet"; any other propagates at once (a
    predicate that must stop the wait, say because a child exited, raises one of those)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(every)


def wait_http(url: str, timeout: float = 30.0, status: int = 200, **kwargs: Any) -> None:
    """Wait until a GET of `url` answers `status` (`kwargs` go to requests.get)."""

    def answers() -> bool:
        response = requests.get(url, timeout=2, **kwargs)
        if response.status_code != status:
            raise ValueError(f"answered {response.status_code}")
        return True

    wait_until(answers, timeout, f"{url} answering {status}", every=0.05)
