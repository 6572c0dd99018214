"""`cams-exporter simulate`: the simulator's command line (flags, one-line errors, signals).

Every flag is checked as it is parsed; a bad one is reported in one line (exit 2), never with
a usage dump or a traceback. The simulator serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn, TypeVar

from cams_simulator.options import (
    DEFAULT_LISTEN,
    LANGUAGE_CODE,
    SHAPES,
    SimulatorOptions,
    parse_faults,
)
from cams_simulator.server import Simulator
from cams_simulator.variants import VARIANTS, parse_variants
from exporter.config.durations import parse_duration

_log = logging.getLogger("cams_simulator")
_T = TypeVar("_T")


class _UsageError(Exception):
    """A bad command line: one line to stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _arg_type(
    convert: Callable[[str], _T], check: Callable[[_T], bool], expected: str
) -> Callable[[str], _T]:
    """An argparse `type=` that turns ValueError and failed checks into one-line messages."""

    def parse(text: str) -> _T:
        try:
            value = convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc) if str(exc) else expected) from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    return parse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _languages(text: str) -> tuple[str, ...]:
    languages = tuple(part.strip() for part in text.split(","))
    for language in languages:
        if not LANGUAGE_CODE.match(language):
            raise ValueError(f"{language!r} is not a language code like en or pt_BR")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages repeat in {text!r}")
    return languages


def _listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port_text)


def _variants_arg(text: str) -> str:
    parse_variants(text)
    return text


def _faults_arg(text: str) -> str:
    parse_faults(text)
    return text


_POSITIVE = (lambda v: v > 0, "must be > 0")
_NOT_NEGATIVE = (lambda v: v >= 0, "must be >= 0")
# (flag, parse, (check, expected), default, metavar, help): the valued flags, in --help order.
_Flag = tuple[str, Callable[[str], Any], tuple[Callable[[Any], bool], str], Any, str, str]
_VALUED: tuple[_Flag, ...] = (
    ("--listen", _listen, (bool, "expected HOST:PORT"), DEFAULT_LISTEN, "HOST:PORT",
     f"address to serve on (default {DEFAULT_LISTEN})"),
    ("--templates", _int, _NOT_NEGATIVE, 20, "N", "number of templates (default 20)"),
    ("--languages", _languages, (bool, "expected en,es,..."), ("en", "es"), "LANGS",
     "comma-separated languages, every template in each (default en,es)"),
    ("--seed", _int, (lambda v: True, "expected an integer"), 1, "N",
     "seed of the data (default 1)"),
    ("--history", parse_duration, _POSITIVE, 90 * 86400.0, "DURATION",
     "days with data before now (default 90d)"),
    ("--qps-limit", _float, _POSITIVE, 50.0, "QPS",
     "GetChatappTemplateMetric requests per second (default 50)"),
    ("--list-qps-limit", _float, _POSITIVE, 5.0, "QPS",
     "ListChatappTemplate requests per second (default 5)"),
    ("--latency", _float, _NOT_NEGATIVE, 0.0, "SECONDS", "delay before each answer (default 0)"),
    ("--max-range", parse_duration, _POSITIVE, 30 * 86400.0, "DURATION",
     "longest End - Start (default 30d)"),
    ("--faults", _faults_arg, (lambda v: True, "bad fault spec"), "", "SPEC",
     "e.g. throttle=0.05,5xx=0.02,timeout=0.01,reset=0.01,seed=7"),
    ("--phone-numbers", _int, (lambda v: 0 <= v <= 10_000, "must be between 0 and 10000"), 3,
     "N", "business phone numbers QueryChatappPhoneNumbers lists (default 3)"),
    ("--sender-period", parse_duration, _POSITIVE, 600.0, "DURATION",
     "how often ratings, tiers and can-send states move on (default 10m)"),
    ("--phone-numbers-qps-limit", _float, _POSITIVE, 10.0, "QPS",
     "QueryChatappPhoneNumbers requests per second (default 10)"),
    ("--phone-metric-qps-limit", _float, _POSITIVE, 50.0, "QPS",
     "GetChatappPhoneNumberMetric requests per second (default 50)"),
    ("--health-qps-limit", _float, _POSITIVE, 5.0, "QPS",
     "GetWhatsappHealthStatus requests per second (default 5)"),
    ("--variant", _variants_arg, (lambda v: True, "bad variant spec"), "", "SPEC",
     "answer variants NAME[=SHARE],... (see docs/simulator.md): " + ", ".join(VARIANTS)),
    ("--timeout-fault", _float, _NOT_NEGATIVE, 15.0, "SECONDS",
     "how long a timeout fault stays silent (default 15)"),
)  # fmt: skip


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="cams-exporter simulate",
        description="Run the CAMS API simulator (ListChatappTemplate, GetChatappTemplateMetric, "
        "QueryChatappPhoneNumbers, GetChatappPhoneNumberMetric, GetWhatsappHealthStatus).",
    )
    for flag, parse, (check, expected), default, metavar, text in _VALUED:
        kind = _arg_type(parse, check, expected)
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    parser.add_argument("--static", action="store_true", help="freeze the data: same answers")
    parser.add_argument(
        "--read-reset",
        action="store_true",
        help="reads and clicks of a day answer 0 from day +8 on (the end of Meta's 7-day read "
        "window), sent and delivered stay",
    )
    parser.add_argument("--access-key-id", default="demo", metavar="ID", help="key id (demo)")
    parser.add_argument(
        "--access-key-secret", default="demo-secret", metavar="SECRET", help="its secret"
    )
    parser.add_argument("--shape", choices=SHAPES, default="per-bucket", help="answer shape")
    return parser


def _parse_args(argv: Sequence[str]) -> tuple[SimulatorOptions, str, int]:
    args = _build_parser().parse_args(list(argv))
    host, port = args.listen
    try:
        options = SimulatorOptions(
            templates=args.templates,
            languages=args.languages,
            seed=args.seed,
            static=args.static,
            history_s=args.history,
            access_key_id=args.access_key_id,
            access_key_secret=args.access_key_secret,
            qps_limit=args.qps_limit,
            list_qps_limit=args.list_qps_limit,
            latency_s=args.latency,
            max_range_s=args.max_range,
            faults=args.faults,
            shape=args.shape,
            timeout_fault_s=args.timeout_fault,
            phone_numbers=args.phone_numbers,
            sender_period_s=args.sender_period,
            numbers_qps_limit=args.phone_numbers_qps_limit,
            number_metric_qps_limit=args.phone_metric_qps_limit,
            health_qps_limit=args.health_qps_limit,
            variants=args.variant,
            read_reset=args.read_reset,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return options, host, port


def main(argv: list[str] | None = None) -> int:
    """`cams-exporter simulate ...`: serve until SIGINT or SIGTERM."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["simulate"]:
        args = args[1:]
    try:
        options, host, port = _parse_args(args)
    except _UsageError as exc:
        print(f"cams-exporter simulate: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        simulator = Simulator(options, host, port)
    except OSError as exc:
        print(
            f"cams-exporter simulate: error: cannot listen on {host}:{port}: {exc}", file=sys.stderr
        )
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    simulator.start()
    _log.info(
        "CAMS simulator listening on %s (bound to %s; %d templates x %d languages, %d phone"
        " numbers, shape %s, %s, key id %s)",
        simulator.url,
        simulator.bound_address,
        options.templates,
        len(options.languages),
        options.phone_numbers,
        options.shape,
        ("static" if options.static else "live") + (", read reset" if options.read_reset else ""),
        options.access_key_id,
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _log.info("CAMS simulator stopped")
    return 0
