"""Command line: flags named like Prometheus' own, subcommands, signals. Wiring only.

cams-exporter --config.file PATH [--web.listen-address :10731] [--web.telemetry-path /metrics]
              [--web.config.file PATH] [--log.level info] [--log.format logfmt] [--shard I/N]
              [--web.enable-lifecycle] [--web.max-connections 512]
cams-exporter --demo
cams-exporter simulate --listen HOST:PORT [...]
cams-exporter check-config PATH
cams-exporter probe --config.file PATH [--account NAME] [--template CODE] [--json] [--redact]
cams-exporter backfill --config.file PATH [--since DATE] [--until DATE] [--output FILE]
              [--label NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, TextIO

from exporter import build_info
from exporter.cli.logs import LEVELS, setup_logging
from exporter.config import ConfigError, load_config, parse_config
from exporter.config.loader import load_or_report
from exporter.config.sections import config_warnings
from exporter.templates.sharding import Shard
from exporter.web.listen import DEFAULT_MAX_CONNECTIONS

if TYPE_CHECKING:  # imported when the exporter starts: check-config and bad configs stay quick
    # (the HTTP server and the web config's TLS and auth: importing this module took 0.44 s
    # of CPU with them, 0.20 s without)
    from exporter.app import Exporter
    from exporter.web.live import WatchedWebConfig
    from exporter.web.server import WebServer

DEFAULT_LISTEN = ":10731"
log = logging.getLogger("cams_exporter")

DEMO_CONFIG = """
poll:
  interval: 15s
  lookback: 8d
  discovery_interval: 5m
accounts:
  - name: demo
    endpoint: {endpoint}
    credentials:
      access_key_id: demo
      access_key_secret: demo-secret
    qps: 40
    list_qps: 4
    spaces:
      - cust_space_id: cams-demo
        discover: true
    sender_health:
      phone_numbers:
        interval: 30s
        qps: 2
      phone_number_metrics:
        qps: 10
      health_status:
        interval: 1m
        qps: 5
        templates: true
"""
# The demo's simulator: numbers and can-send states move on every two minutes.
DEMO_SENDER_PERIOD_S = 120.0


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags in one line (exit 2), without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _PrintVersion(argparse.Action):
    """`--version`: version, revision and Python version, as Prometheus prints its own."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(build_info().version_text())
        parser.exit()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard limit, as Go programs do at start
    (a busy exporter holds one descriptor per connection)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError) as exc:
        log.debug("open-files limit left as it is: %s", exc)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cams-exporter",
        description="Prometheus exporter for Alibaba Cloud CAMS template metrics. "
        "Subcommands: 'simulate' (the CAMS API simulator), 'check-config PATH', 'probe', "
        "'backfill'.",
    )
    parser.add_argument("--config.file", dest="config_file", metavar="PATH", help="YAML config")
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path of the metrics endpoint (default /metrics)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="PATH",
        help="exporter-toolkit web config (TLS, basic auth)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="enable POST /-/reload (off: it answers 403; SIGHUP always reloads)",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"most HTTP connections open at once (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument("--log.level", dest="log_level", default="info", choices=sorted(LEVELS))
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )
    parser.add_argument(
        "--shard", metavar="INDEX/COUNT", help="poll only this replica's share, e.g. 0/3"
    )
    parser.add_argument(
        "--demo", action="store_true", help="run against the embedded CAMS simulator"
    )
    parser.add_argument(
        "--version", action=_PrintVersion, help="show version, revision and Python version"
    )
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"cams-exporter: error: {message}", file=sys.stderr)
    return code


def check_config_main(
    path: str, out: TextIO, err: TextIO, env: Mapping[str, str] | None = None
) -> int:
    """`cams-exporter check-config PATH`: 0 and a summary, or 2 and one line per problem."""
    config = load_or_report(path, err, env)
    if config is None:
        return 2
    spaces = sum(len(account.spaces) for account in config.accounts)
    print(f"config OK: {len(config.accounts)} accounts, {spaces} spaces", file=out)
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=err)
    return 0


def _probe(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog="cams-exporter probe",
        description="Read-only calls that find out how the real CAMS API behaves on every open "
        "question (paging, answer shape, alignment, Language, HALF_HOUR, ranges, retention, "
        "throttling), with the settings to use. Keep the report.",
    )
    parser.add_argument("--config.file", dest="config_file", metavar="PATH", required=True)
    parser.add_argument("--account", metavar="NAME", help="probe only this account")
    parser.add_argument("--template", metavar="CODE", help="probe this template")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--redact", action="store_true", help="mask template codes, names and phone numbers"
    )
    args = parser.parse_args(list(argv))
    setup_logging("error", "logfmt")
    from exporter.probe.report import run_probe

    return run_probe(
        args.config_file,
        args.account,
        args.template,
        args.json,
        args.redact,
        sys.stdout,
        sys.stderr,
    )


def _date(text: str) -> dt.date:
    """A `YYYY-MM-DD` date (the only form accepted, as in the config's `counters_since`)."""
    try:
        if len(text) == 10 and text[4] == text[7] == "-":
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a UTC date like 2026-01-31: {text!r}")


def _label(text: str) -> tuple[str, str]:
    """`NAME=VALUE`, NAME a Prometheus label name (as promtool's own `--label`)."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__"):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with a label name, got {text!r}")
    return name, value


def _backfill(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog="cams-exporter backfill",
        description="Write the history the API still holds as an OpenMetrics file of the "
        "exporter's counters (same names, labels and origin), for "
        "'promtool tsdb create-blocks-from openmetrics FILE DIR'. What cannot be vouched for "
        "is left out and named on stderr. Exit 0: all written; 1: something missing (named); "
        "2: bad config or flags.",
    )
    parser.add_argument("--config.file", dest="config_file", metavar="PATH", required=True)
    parser.add_argument(
        "--since", type=_date, metavar="DATE", help="first day written (default: the origin)"
    )
    parser.add_argument(
        "--until",
        type=_date,
        metavar="DATE",
        help="write the days before this UTC date (default: today); with a state file, the "
        "day the exporter was first scraped",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="where to write the file (default or '-': stdout)"
    )
    parser.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a label Prometheus's scrape adds to the exporter's series (job, instance, ...), "
        "so that the live series continue these; repeat for each",
    )
    args = parser.parse_args(list(argv))
    setup_logging("warn", "logfmt")
    from exporter.backfill.command import Request, run_backfill

    request = Request(args.config_file, args.since, args.until, args.output, tuple(args.label))
    try:
        return run_backfill(request, sys.stdout.buffer, sys.stderr)
    except KeyboardInterrupt:
        print("cams-exporter backfill: interrupted; no file written", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "simulate":
        from cams_simulator import main as simulate_main

        return simulate_main(args_list[1:])
    if args_list and args_list[0] == "check-config":
        if len(args_list) != 2:
            return _fail("usage: cams-exporter check-config PATH")
        return check_config_main(args_list[1], sys.stdout, sys.stderr)
    if args_list and args_list[0] == "probe":
        return _probe(args_list[1:])
    if args_list and args_list[0] == "backfill":
        return _backfill(args_list[1:])

    args = _parser().parse_args(args_list)
    setup_logging(args.log_level, args.log_format)
    if args.demo and args.config_file:
        return _fail("--demo and --config.file cannot be used together")
    if not args.demo and not args.config_file:
        return _fail("--config.file is required (or --demo to try it with the simulator)")
    shard = None
    if args.shard:
        try:
            shard = Shard.parse(args.shard)
        except ValueError as exc:
            return _fail(str(exc))
    raise_open_files_limit()
    web_config: WatchedWebConfig | None = None
    if args.web_config:
        from exporter.web.config import WebConfigError
        from exporter.web.live import WatchedWebConfig

        try:
            web_config = WatchedWebConfig(args.web_config)
        except WebConfigError as exc:
            return _fail(str(exc))

    simulator = None
    try:
        if args.demo:
            from cams_simulator import Simulator, SimulatorOptions

            simulator = Simulator(
                SimulatorOptions(
                    templates=6,
                    languages=("en", "es"),
                    phone_numbers=3,
                    sender_period_s=DEMO_SENDER_PERIOD_S,
                )
            )
            simulator.start()
            config = parse_config(DEMO_CONFIG.format(endpoint=simulator.url), env={})
            log.info("demo: embedded CAMS simulator at %s", simulator.url)
        else:
            config = load_config(args.config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2

    from exporter.app import Exporter  # the client, poller and collectors: after the config
    from exporter.web.server import WebServer

    exporter = Exporter(config, config_path=args.config_file, shard=shard)
    try:
        server = WebServer(
            args.listen,
            exporter.handlers(),
            args.telemetry_path,
            web_config,
            max_connections=args.max_connections,
            enable_lifecycle=args.enable_lifecycle,
        )
    except (ValueError, OSError) as exc:
        if simulator is not None:
            simulator.stop()
        return _fail(f"--web.listen-address {args.listen}: {exc}", 1)
    return _serve(exporter, server, simulator)


def _serve(exporter: Exporter, server: WebServer, simulator: object | None) -> int:
    stop = threading.Event()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    hup = threading.Event()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        hup.set()  # a burst of SIGHUPs is one pending reload

    def reloader() -> None:
        while hup.wait() and not stop.is_set():
            hup.clear()
            exporter.reload()

    threading.Thread(target=reloader, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)

    started = time.monotonic()
    exporter.start()
    server.start()  # logs the one "Listening on" line, with the bound port
    announced = False
    while not stop.wait(0.5):
        if not announced and exporter.snapshot.ready:
            announced = True
            log.info("ready: first poll complete in %.1fs", time.monotonic() - started)
    server.shutdown()
    exporter.stop()
    stop_sim = getattr(simulator, "stop", None)
    if callable(stop_sim):
        stop_sim()
    log.info("stopped")
    return 0
