"""Command line: flags named like Prometheus' own, subcommands, signals. Wiring only.

cams-exporter --config.file PATH [--web.listen-address :10731] [--web.telemetry-path /metrics]
              [--web.config.file PATH] [--log.level info] [--log.format logfmt] [--shard I/N]
cams-exporter --demo
cams-exporter simulate --listen HOST:PORT [...]
cams-exporter check-config PATH
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import NoReturn, TextIO

from exporter import __version__
from exporter.app import Exporter
from exporter.config import ConfigError, load_config, parse_config
from exporter.logs import LEVELS, setup_logging
from exporter.sharding import Shard
from exporter.web import WebConfig, WebConfigError, WebServer, load_web_config

DEFAULT_LISTEN = ":10731"
log = logging.getLogger("cams_exporter")

DEMO_CONFIG = """
poll:
  interval: 15s
  lookback: 3d
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


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cams-exporter",
        description="Prometheus exporter for Alibaba Cloud CAMS template metrics. "
        "Subcommands: 'simulate' (the CAMS API simulator), 'check-config PATH'.",
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
    parser.add_argument("--version", action="version", version=f"cams-exporter {__version__}")
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"cams-exporter: error: {message}", file=sys.stderr)
    return code


def check_config_main(
    path: str, out: TextIO, err: TextIO, env: Mapping[str, str] | None = None
) -> int:
    """`cams-exporter check-config PATH`: 0 and a summary, or 2 and one line per problem."""
    try:
        config = load_config(path, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return 2
    spaces = sum(len(account.spaces) for account in config.accounts)
    print(f"config OK: {len(config.accounts)} accounts, {spaces} spaces", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "simulate":
        from exporter.simulator import main as simulate_main

        return simulate_main(args_list[1:])
    if args_list and args_list[0] == "check-config":
        if len(args_list) != 2:
            return _fail("usage: cams-exporter check-config PATH")
        return check_config_main(args_list[1], sys.stdout, sys.stderr)

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
    web_config: WebConfig | None = None
    if args.web_config:
        try:
            web_config = load_web_config(args.web_config)
        except WebConfigError as exc:
            return _fail(str(exc))

    simulator = None
    try:
        if args.demo:
            from exporter.simulator import Simulator, SimulatorOptions

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

    exporter = Exporter(config, config_path=args.config_file, shard=shard)
    try:
        server = WebServer(args.listen, exporter.handlers(), args.telemetry_path, web_config)
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

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=exporter.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)

    started = time.monotonic()
    exporter.start()
    server.start()
    log.info("listening on port %d", server.port)
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
