"""The unit promise, kept: a test under tests/unit/ opens no socket and starts no process.

For each unit module, `socket.socket`'s `connect`, `connect_ex` and `bind`, the constructor of
`subprocess.Popen` (behind `subprocess.run` and friends), `os.system`, `os.fork` and
`os.posix_spawn[p]` are replaced, through pytest's MonkeyPatch and undone after the module, by a
guard that raises `UnitBoundaryError` naming the call. Module-scoped fixtures run under it too
(it is the first fixture of its scope). A test during which a guard was tripped fails, even where
the code under test caught the error. A test that needs a server or a child process belongs in
tests/e2e/ (docs/testing.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest


class UnitBoundaryError(RuntimeError):
    """A unit test opened a socket or started a process."""


def _refusal(what: str, tripped: list[str]) -> Callable[..., Any]:
    def guard(*args: Any, **kwargs: Any) -> Any:
        tripped.append(f"{what} (thread {threading.current_thread().name})")
        raise UnitBoundaryError(
            f"a unit test may not {what}: it belongs in tests/e2e/ (see docs/testing.md)"
        )

    return guard


@pytest.fixture(scope="module", autouse=True)
def no_sockets_or_processes() -> Iterator[list[str]]:
    """Refuse sockets and processes for the whole module; yields what was attempted."""
    tripped: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for method in ("connect", "connect_ex", "bind"):
            patch.setattr(socket.socket, method, _refusal(f"call socket.{method}", tripped))
        patch.setattr(subprocess.Popen, "__init__", _refusal("start subprocess.Popen", tripped))
        for name in ("system", "fork", "posix_spawn", "posix_spawnp"):
            if hasattr(os, name):
                patch.setattr(os, name, _refusal(f"call os.{name}", tripped))
        yield tripped


@pytest.fixture(autouse=True)
def unit_boundary_kept(no_sockets_or_processes: list[str]) -> Iterator[None]:
    """Fail the test if it (or a fixture of its module) tripped a guard, caught or not."""
    yield
    crossed = list(no_sockets_or_processes)
    no_sockets_or_processes.clear()  # each attempt is reported once
    if crossed:
        pytest.fail("a unit test opened a socket or started a process: " + "; ".join(crossed))
