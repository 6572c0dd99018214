"""The unit promise itself (tests/unit/conftest.py): a socket or a process in a unit test fails it,
loudly, even where the code under test catches the refusal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import UnitBoundaryError

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")


def test_sockets_and_processes_are_refused_naming_the_call(
    no_sockets_or_processes: list[str],
) -> None:
    with socket.socket() as sock:
        with pytest.raises(UnitBoundaryError, match=r"socket\.bind.*tests/e2e/"):
            sock.bind(("127.0.0.1", 0))
        with pytest.raises(UnitBoundaryError, match=r"socket\.connect"):
            sock.connect(("127.0.0.1", 9))
    with pytest.raises(UnitBoundaryError, match=r"subprocess\.Popen"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(UnitBoundaryError, match=r"os\.system"):
        os.system("true")
    assert len(no_sockets_or_processes) == 4
    no_sockets_or_processes.clear()  # attempted on purpose here: not this test's failure


def test_a_refusal_the_code_catches_still_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the inner run: pytest alone
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_server="""
import socket

import pytest


@pytest.fixture(scope="module")
def server():
    try:
        socket.socket().bind(("127.0.0.1", 0))
    except Exception:
        pass  # a server that swallows its errors
    return "started"


def test_starts_a_server(server):
    assert server == "started"


def test_after_it():
    pass
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*opened a socket or started a process: call socket.bind*"])
