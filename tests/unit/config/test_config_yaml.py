"""The config's YAML loader: its libyaml fast path builds exactly what the pure-Python one builds.

`yamlsafe.load` parses a document with libyaml where it can, and with PyYAML's pure-Python
loader otherwise. Over the example config, the test configs, the fuzz suite's special files and
a seeded sample of mutated configs, `load` must answer as `load_pure` does: the same values and
types, the same duplicate keys with their lines, or the same refusal with the same message.
The fast path itself (`FastConfigLoader`, a `yaml.CSafeLoader` subclass) loads real configs.
Deep nesting loads alike up to the recursion limit and is refused past it; that it never crashes
the process (libyaml's composer, which recurses in C, would without the depth check) is checked
on `check-config` in a child process, in tests/e2e/test_check_config.py.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from exporter.config import yamlsafe
from tests.kit.config_fuzz import BASE, SPECIAL, raw_mutation, render

ROOT = Path(__file__).resolve().parents[3]
MUTATIONS = 240  # seeded: about 2 s of the pure loader


def shape(value: Any, seen: dict[int, int] | None = None) -> Any:
    """A comparable picture of a loaded document: types, values, duplicates, shared nodes."""
    seen = {} if seen is None else seen
    if isinstance(value, dict | list):
        if id(value) in seen:  # an alias: the same node again (or a cycle)
            return ("node", seen[id(value)])
        seen[id(value)] = len(seen)
    if isinstance(value, yamlsafe.YamlMapping):
        items = tuple((shape(k, seen), shape(v, seen)) for k, v in value.items())
        return ("map", items, tuple(sorted((repr(k), v) for k, v in value.duplicates.items())))
    if isinstance(value, dict):
        return ("dict", tuple((shape(k, seen), shape(v, seen)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(shape(v, seen) for v in value))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def outcome(load: Callable[[str], Any], text: str) -> Any:
    try:
        return ("loaded", shape(load(text)))
    except RecursionError:
        return ("too deep",)
    except Exception as exc:  # the refusal, as the config loader turns it into a message
        return ("refused", type(exc).__name__, str(exc))


def corpus() -> list[tuple[str, str]]:
    example = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    texts = [("config.example.yaml", example)]
    texts += [(p.name, p.read_text(encoding="utf-8")) for p in sorted(ROOT.glob("tests/configs/*"))]
    for name, content in SPECIAL.items():
        if content is not None and name != "deeply nested":
            texts.append((name, content.decode("utf-8", errors="surrogateescape")))
    rng = random.Random(20261201)
    rendered = render(copy.deepcopy(BASE))
    for i in range(MUTATIONS):
        text = example if i % 2 else rendered
        for _ in range(rng.randrange(1, 4)):
            text = raw_mutation(text, rng)
        texts.append((f"mutation {i}", text))
    return texts


def test_libyaml_is_there_for_the_fast_path() -> None:
    fast = yamlsafe.FastConfigLoader
    assert fast is not None, "PyYAML without libyaml: no fast path to test"
    example = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    alone = outcome(lambda text: yaml.load(text, Loader=fast), example)
    assert alone[0] == "loaded"  # no fallback: libyaml read it
    assert alone == outcome(yamlsafe.load_pure, example)


def test_fast_and_pure_loaders_agree_on_every_document() -> None:
    loaded = refused = 0
    for name, text in corpus():
        fast, pure = outcome(yamlsafe.load, text), outcome(yamlsafe.load_pure, text)
        assert fast == pure, f"{name}: the loaders disagree"
        loaded += fast[0] == "loaded"
        refused += fast[0] == "refused"
    print(f"\nyaml loaders: {loaded} documents loaded alike, {refused} refused alike")
    assert loaded >= 50 and refused >= 20  # both sides of the comparison are exercised


def test_duplicate_keys_keep_their_lines_on_the_fast_path() -> None:
    tree = yamlsafe.load("poll:\n  interval: 5m\n  interval: 1m\npoll: {}\n")
    assert tree.duplicates == {"poll": (4, 1)}
    assert tree == {"poll": {}}
    assert yamlsafe.load("a:\n  x: 1\n  x: 2\n")["a"].duplicates == {"x": (3, 2)}
    assert yamlsafe.load("since: 2026-13-45\n") == {"since": "2026-13-45"}  # dates stay text


def nested(depth: int) -> str:
    return "a: " + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "\n"


def test_deep_documents_load_alike() -> None:
    text = nested(200)
    assert outcome(yamlsafe.load, text) == outcome(yamlsafe.load_pure, text)
    assert outcome(yamlsafe.load, text)[0] == "loaded"


def test_a_document_nested_past_the_recursion_limit_is_refused_as_the_pure_loader_does() -> None:
    text = nested(sys.getrecursionlimit() + 50)
    assert outcome(yamlsafe.load, text) == outcome(yamlsafe.load_pure, text) == ("too deep",)
