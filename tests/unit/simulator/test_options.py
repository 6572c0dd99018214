"""The simulator's options and command line, checked before anything listens: fault specs,
option values and flags (the template actions' and the sender-health actions'), each refused
in one line."""

from __future__ import annotations

import re

import pytest

from cams_simulator import FaultSpec, SimulatorOptions, main, parse_faults


def test_parse_faults() -> None:
    spec = parse_faults(
        "throttle=0.05, 5xx=0.02,timeout=0.01,reset=0.01,malformed=0.01,error200=0,seed=7"
    )
    assert spec == FaultSpec(0.05, 0.02, 0.01, 0.01, 0.01, 0.0, 7)
    assert parse_faults("") == FaultSpec() and not FaultSpec().active
    for bad, fragment in [
        ("bogus=0.1", "'bogus=0.1'"),
        ("throttle=1.5", "'throttle=1.5'"),
        ("throttle=-0.1", "'throttle=-0.1'"),
        ("throttle=nan", "'throttle=nan'"),
        ("throttle=abc", "'throttle=abc'"),
        ("timeout", "'timeout'"),
        ("seed=x", "'seed=x'"),
        ("reset=0.6,malformed=0.6", "more than 1"),
        ("reset=0.1,reset=0.2", "twice"),
    ]:
        with pytest.raises(ValueError, match=re.escape(fragment)) as info:
            parse_faults(bad)
        assert "\n" not in str(info.value)


def test_options_are_validated() -> None:
    for bad in (
        {"shape": "round"},
        {"templates": -1},
        {"languages": ()},
        {"languages": ("en", "en")},
        {"qps_limit": 0},
        {"faults": "throttle=3"},
    ):
        with pytest.raises(ValueError):
            SimulatorOptions(**bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["--templates", "x"],
        ["--templates", "-3"],
        ["--faults", "bogus=1"],
        ["--faults", "throttle=2"],
        ["--shape", "weird"],
        ["--history", "3x"],
        ["--max-range", "0s"],
        ["--bogus"],
        ["--listen", "nohost"],
        ["--languages", "en,,es"],
        ["--qps-limit", "0"],
        ["--latency", "-1"],
        ["--timeout-fault", "soon"],
        ["extra"],
    ],
)
def test_cli_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("cams-exporter simulate: error: ")
    assert "Traceback" not in err


def test_options_and_flags_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ({"phone_numbers": -1}, {"sender_period_s": 0}, {"health_qps_limit": 0}):
        with pytest.raises(ValueError):
            SimulatorOptions(**bad)  # type: ignore[arg-type]
    for argv in (["--phone-numbers", "x"], ["--sender-period", "0s"], ["--health-qps-limit", "0"]):
        assert main(argv) == 2
        _, err = capsys.readouterr()
        assert err.count("\n") == 1 and err.startswith("cams-exporter simulate: error: ")
