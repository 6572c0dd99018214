"""The CPU of one publish's rendering, in a process of its own on the exporter tree under test.

    PYTHONPATH=TREE python bench/exposition_publish.py --templates T [--accounts 4]
        [--rounds 3] [--state FILE]

`bench/exposition.py` runs this once per tree and size. It builds a `Snapshot` of ACCOUNTS
accounts x T templates x 4 languages (the same data whatever the tree; about 7.5 series a
unit, as the simulator gives), publishes it once in full, then ROUNDS rounds of one publish per
account, each with that account's part new (what the end of an account's cycle publishes: the
others keep the part they published last), and one publish that brings only new sender health
(the series unchanged). Each publish is `Exposition.prepare` under the tree's GC policy (paused
while it runs, objects frozen after), timed with `time.process_time` (this process has one
thread). With `--state`, the state file an exporter of that tree wrote is loaded and saved
again (the other part of a cycle's publish), timed the same way.

It prints one JSON line: the CPU seconds of each kind of publish, the peak RSS over the
publishes (before the state file is loaded), and the SHA-256
of the final snapshot's text and OpenMetrics bodies (the same data in every tree: the same
hashes mean the same bytes). It imports only what every tree compared has (`exporter`'s
snapshot values and `Exposition`), never `bench` or `tests`: those come from the tree too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

from exporter.cams.model import UnitKey
from exporter.counting.state import Counts

try:
    from exporter.counting.store import CounterStore
except ImportError:  # trees before the state file had a module of its own (614f6f3)
    from exporter.counting.state import CounterStore  # type: ignore[attr-defined,no-redef]
from exporter.publish.exposition import Exposition
from exporter.publish.snapshot import Snapshot
from exporter.templates.view import AccountStatus, TemplateSeries

LANGUAGES = ("en", "es", "pt", "id")
BUTTONS = (("url", "Shop now"), ("quick_reply", "Stop promotions"), ("phone_number", "Call us"))


def account_part(account: int, templates: int, bump: int) -> tuple[TemplateSeries, ...]:
    """One account's series, sorted by key; `bump` changes every count (a new cycle)."""
    out = []
    for unit in range(templates * len(LANGUAGES)):
        template, language = divmod(unit, len(LANGUAGES))
        code = hashlib.md5(f"{account}/{template}".encode()).hexdigest()
        # 6 units in 13 have buttons: ~7.5 series a unit, as the simulator's data has
        clicks = (
            tuple(
                sorted((kind, text, unit * 3 + bump + i) for i, (kind, text) in enumerate(BUTTONS))
            )[: 1 + unit % 3]
            if unit % 13 < 6
            else ()
        )
        out.append(
            TemplateSeries(
                UnitKey(f"acct{account}", "cams-bench", code, LANGUAGES[language], "WHATSAPP"),
                f"spring_sale_{template}",
                "MARKETING" if template % 3 else "UTILITY",
                "pass",
                Counts(
                    10_000 + unit * 97 + bump, 9_000 + unit * 89 + bump, 5_000 + unit * 53, clicks
                ),
                1_764_028_800.0 + bump,
                1_763_971_200.0,
            )
        )
    return tuple(sorted(out, key=lambda s: s.key))


def snapshot(generation: int, parts: tuple[tuple[TemplateSeries, ...], ...]) -> Snapshot:
    statuses = tuple(
        AccountStatus(
            f"acct{i}",
            "http://127.0.0.1:1",
            ("cams-bench",),
            units=len(part),
            reads=len(part),
            units_done=len(part),
            first_cycle_complete=True,
            up=True,
            last_poll_success=1_764_028_800.0 + generation,
            last_poll_duration=71.5,
            templates_discovered=(("cams-bench", len(part)),),
        )
        for i, part in enumerate(parts)
    )
    series = tuple(s for part in parts for s in part)
    return Snapshot(generation, time.time(), statuses, series, parts)


def gc_policy() -> tuple[Callable[[], AbstractContextManager[None]], Callable[[], None]]:
    """(paused, after_publish) of the tree's GC policy, tuned as the exporter tunes it; plain
    collection when the tree has none."""
    try:
        from exporter.publish.memory import GcPolicy
    except ImportError:
        return nullcontext, lambda: None
    GcPolicy.tune()
    policy = GcPolicy()
    return policy.paused, policy.after_publish


def cpu_of(action: Callable[[], object]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def rss_mb(field: str) -> float:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def bodies(exposition: Exposition) -> Iterator[bytes]:
    for openmetrics in (False, True):
        rendered = exposition.render(openmetrics)  # (content type,) chunks, gzipped chunks
        yield b"".join(rendered[-2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, required=True, help="templates per account")
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--state", help="a state file to load and save again")
    args = parser.parse_args()
    paused, after_publish = gc_policy()
    parts = tuple(account_part(a, args.templates, 0) for a in range(args.accounts))
    current = snapshot(1, parts)
    exposition = Exposition(lambda: current, lambda openmetrics: (b"", b""))

    def publish(snap: Snapshot) -> None:
        with paused():
            exposition.prepare(snap)
        after_publish()

    rss_before = rss_mb("VmRSS")
    first = cpu_of(lambda: publish(current))
    cycle: list[float] = []
    generation = 1
    for bump in range(1, args.rounds + 1):
        for account in range(args.accounts):
            new = account_part(account, args.templates, bump)
            parts = (*parts[:account], new, *parts[account + 1 :])
            generation += 1
            current = snapshot(generation, parts)
            cycle.append(cpu_of(lambda snap=current: publish(snap)))  # type: ignore[misc]
    same_series = Snapshot(
        generation + 1, time.time(), current.accounts, current.series, current.parts
    )
    senders_only = cpu_of(lambda: publish(same_series))
    rss_after = rss_mb("VmHWM")  # before the state file is loaded
    text, openmetrics = bodies(exposition)
    result: dict[str, object] = {
        "units": args.accounts * args.templates * len(LANGUAGES),
        "series": sum(1 for line in text.split(b"\n") if line and not line.startswith(b"#")),
        "bytes_plain": len(text),
        "first_publish_cpu_s": first,
        "cycle_publish_cpu_s": cycle,
        "cycle_publish_cpu_median_s": statistics.median(cycle),
        "senders_only_publish_cpu_s": senders_only,
        "sha256_text": hashlib.sha256(text).hexdigest(),
        "sha256_openmetrics": hashlib.sha256(openmetrics).hexdigest(),
        "rss_mb_before_publishes": rss_before,
        "peak_rss_mb_publishes": rss_after,
    }
    if args.state:
        store, warning = CounterStore.load(args.state)
        with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
            path = os.path.join(tmp, "state.json")
            saves = [cpu_of(lambda: store.save(path)) for _ in range(3)]
        result["state_units"] = sum(1 for _ in store)
        result["state_save_cpu_s"] = statistics.median(saves)
        result["state_warning"] = warning
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
