"""The exporter's command line as `python -m exporter [simulate] --help` prints it: the
deployment examples are checked against its flags."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache

from tests.kit.procs import ROOT

FLAG = re.compile(r"(?<![\w-])(--[a-z][\w.-]*)")


@cache
def help_flags(*subcommand: str) -> frozenset[str]:
    """Every flag `--help` names (of the subcommand, if given)."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", *subcommand, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    flags = frozenset(FLAG.findall(proc.stdout))
    assert "--help" in flags
    return flags


def used_flags(argv: list[str]) -> list[str]:
    """The flags of an argv (`--name` or `--name=value`), by name."""
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]


def flag_value(argv: list[str], flag: str) -> str:
    """The value given to `flag` in `argv` (`--flag value` or `--flag=value`)."""
    for i, arg in enumerate(argv):
        if arg == flag:
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {argv}")


def check_exporter_argv(argv: list[str]) -> None:
    """argv after `cams-exporter`: every flag is one the exporter (or `simulate`) has."""
    if argv and argv[0] == "simulate":
        allowed, rest = help_flags("simulate"), argv[1:]
    else:
        allowed, rest = help_flags(), argv
    unknown = set(used_flags(rest)) - allowed
    assert not unknown, f"flags the exporter does not have: {unknown} in {argv}"
