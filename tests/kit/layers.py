"""The import graph of `exporter/` and `cams_simulator/`, judged against the layers.

Data flows one way, folder by folder: config -> cams -> counting -> templates -> senders ->
publish / probe / backfill -> app -> cli. A module may import its own folder and any folder
below it; `web/` imports nothing of the exporter outside `web/`, and only `publish/`, `app` and
`cli` import it; the simulator imports only the API's values (`cams/`) and `config/`.

Run `python3 -m tests.kit.layers [ROOT]` to print every import that runs back up (the test
suite asserts there is none); ROOT defaults to the current directory, so the same command
counts them in a checkout of an older commit, whose flat modules are placed in the layer
their successors live in (`OLD_HOMES`).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Lower rank = lower layer. Folders of equal rank may not import each other.
RANKS: dict[str, int] = {
    "exporter": 0,  # the package itself: __version__
    "config": 0,
    "cams": 1,
    "counting": 2,
    "templates": 3,
    "senders": 4,
    "publish": 5,
    "probe": 5,
    "backfill": 5,
    "app": 6,
    "cli": 7,
    "__main__": 8,
}
WEB_USERS = frozenset({"publish", "app", "cli", "web"})
SIMULATOR_MAY_USE = frozenset({"exporter", "cams", "config"})

# Where each flat module of the tree before the grouping (commit afc7511) went.
OLD_HOMES: dict[str, str] = {
    **dict.fromkeys(
        [
            "actions",
            "client",
            "transport",
            "signing",
            "ratelimit",
            "retry",
            "errors",
            "paging",
            "model",
            "context",
            "instruments",
            "answers",
        ],
        "cams",
    ),
    "durations": "config",
    "logs": "cli",
    **dict.fromkeys(["counting", "state", "anomalies"], "counting"),
    **dict.fromkeys(["discovery", "vanishing", "grouping", "poller", "sharding"], "templates"),
    **dict.fromkeys(
        [
            "scheduler",
            "snapshot",
            "exposition",
            "families",
            "collector",
            "registry_render",
            "process_metrics",
            "memory",
        ],
        "publish",
    ),
    **dict.fromkeys(["probe", "findings", "probe_report"], "probe"),
    "simulator": "simulator",
}
OLD_SUBMODULE_HOMES = {
    ("senders", "answers"): "cams",
    ("senders", "model"): "cams",
    ("senders", "collector"): "publish",
    ("senders", "page"): "publish",
    ("web", "pages"): "publish",
    ("web", "markup"): "publish",
}


@dataclass(frozen=True)
class Import:
    """One import of one module by another, with the layers of both."""

    importer: str
    imported: str
    from_layer: str
    to_layer: str


def layer_of(module: str) -> str:
    """The layer of a dotted module name (`exporter.cams.client` -> `cams`)."""
    parts = module.split(".")
    if parts[0] == "cams_simulator":
        return "simulator"
    if len(parts) == 1:
        return "exporter"
    if (parts[1], parts[2] if len(parts) > 2 else "") in OLD_SUBMODULE_HOMES:
        return OLD_SUBMODULE_HOMES[(parts[1], parts[2])]
    return OLD_HOMES.get(parts[1], parts[1])


def modules(root: Path) -> Iterator[tuple[str, Path]]:
    """Every module of the two packages below `root`, with its dotted name."""
    for package in ("exporter", "cams_simulator"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imports(root: Path) -> Iterator[Import]:
    """Every import of an `exporter` or `cams_simulator` module, at any depth of the code; `from
    a import b` counts as importing the module `a.b` when there is one, else `a`."""
    known = dict(modules(root))
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: set[str] = set()
            if isinstance(node, ast.Import):
                targets = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in known else node.module)
            for target in sorted(targets):
                if target.split(".")[0] in ("exporter", "cams_simulator"):
                    yield Import(name, target, layer_of(name), layer_of(target))


def is_upward(edge: Import) -> bool:
    """Whether an import breaks the one-way flow."""
    low, high = edge.from_layer, edge.to_layer
    if low == high:
        return False
    if low == "simulator":
        return high not in SIMULATOR_MAY_USE
    if high == "simulator":
        return low != "cli"
    if high == "web":
        return low not in WEB_USERS
    if low == "web":
        return high != "exporter"
    return RANKS.get(high, 99) >= RANKS.get(low, 99)


def upward_imports(root: Path) -> list[Import]:
    """The imports that run back up, each (importer, imported module) once."""
    found = {(e.importer, e.imported): e for e in imports(root) if is_upward(e)}
    return sorted(found.values(), key=lambda e: (e.importer, e.imported))


def cycles(root: Path) -> list[list[str]]:
    """Import cycles between modules (each as the list of its modules), none expected."""
    graph: dict[str, set[str]] = {}
    for edge in imports(root):
        if edge.imported != edge.importer:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node) :])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return found


def main(argv: list[str]) -> int:
    """Print the imports that run back up; exit 1 when there is any."""
    root = Path(argv[0]) if argv else Path.cwd()
    found = upward_imports(root)
    for edge in found:
        print(f"{edge.importer} ({edge.from_layer}) -> {edge.imported} ({edge.to_layer})")
    print(f"{len(found)} imports run back up")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
