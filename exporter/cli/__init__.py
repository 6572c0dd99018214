"""The command line: flags named like Prometheus' own, the subcommands (`check-config`, `probe`,
`simulate`, `--demo`), signals, and the one-line-per-event logging (`logs`).

`main` is the console script `cams-exporter` (and `python -m exporter`); the heavy parts (the
HTTP server, polling) are imported only when the exporter starts, so `check-config` and a
refused config stay quick.
"""

from exporter.cli.main import check_config_main, main

__all__ = ["check_config_main", "main"]
