"""The YAML loader of config files: PyYAML's safe loader, stricter in two ways.

- Dates stay text. A YAML 1.1 timestamp (`2026-01-01`) is not turned into a `date` while the
  document loads, so an impossible one (`2026-13-45`) is reported by the checker at its key,
  not as a failure of the whole document.
- Duplicate keys are remembered. YAML keeps the last of two equal keys silently; here every
  mapping is a `YamlMapping` that records, for each key given twice, the line of the repeat
  and of the first occurrence, and the checker refuses it.

The loaders are PyYAML's, subclassed through its public API only (class attributes and
`add_constructor`): `ConfigLoader` on `yaml.SafeLoader` (pure Python), and, where PyYAML has
libyaml, `FastConfigLoader` on `yaml.CSafeLoader` (libyaml parses and composes, the constructors
are the same Python ones): 0.5 ms of CPU for config.example.yaml, the depth check included,
against 4.4 ms for the pure loader.
libyaml's composer recurses in C and would crash the process on a document nested some hundred
thousand levels deep, so `load` first reads the nesting depth off libyaml's events (a flat
stream, no recursion): past the recursion limit the document is refused as nested too deeply
(the pure loader, whose composer recurses at least once a level, refuses it alike), and beyond
`FAST_DEPTH` (no real config comes near) the pure loader reads it. A document libyaml refuses is
read again by the pure loader, whose verdict and message are then the ones given, and so is a
document with a tab in it: libyaml takes tabs where PyYAML's scanner refuses them (a tab inside
a plain scalar, `http://127.0.0.\t1`), and the same file must get one verdict. Both loaders
build the same values: tests/unit/config/test_config_yaml.py compares them on mutated configs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class YamlMapping(dict[Any, Any]):
    """A mapping of the document; `duplicates` maps a repeated key to (its line, first line)."""

    duplicates: dict[Any, tuple[int, int]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duplicates = {}


# The safe loader's implicit types without timestamps.
_RESOLVERS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _duplicates(
    loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.MappingNode
) -> dict[Any, tuple[int, int]]:
    """Each key given twice in `node`, by its text: (the line of the repeat, of the first)."""
    first_line: dict[Any, int] = {}
    repeated: dict[Any, tuple[int, int]] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = str(loader.construct_scalar(key_node))
        line = key_node.start_mark.line + 1
        if key in first_line:
            repeated.setdefault(key, (line, first_line[key]))
        else:
            first_line[key] = line
    return repeated


def _construct_config_map(
    loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.MappingNode
) -> Iterator[YamlMapping]:
    """Like SafeLoader's map constructor, into a YamlMapping with its duplicates."""
    data = YamlMapping()
    yield data
    repeated = _duplicates(loader, node)  # by the keys' text, before merge keys are flattened
    data.update(loader.construct_mapping(node))
    for key in data:
        if str(key) in repeated:
            data.duplicates[key] = repeated[str(key)]


class ConfigLoader(yaml.SafeLoader):
    """The pure-Python loader: SafeLoader without timestamps, recording duplicate keys."""

    yaml_implicit_resolvers = _RESOLVERS


ConfigLoader.add_constructor("tag:yaml.org,2002:map", _construct_config_map)


FastConfigLoader: type[yaml.CSafeLoader] | None = None  # where PyYAML has libyaml
if yaml.__with_libyaml__:

    class _FastConfigLoader(yaml.CSafeLoader):
        """The same loader on libyaml: CSafeLoader without timestamps, recording duplicate
        keys (the constructors are PyYAML's Python ones)."""

        yaml_implicit_resolvers = _RESOLVERS

    _FastConfigLoader.add_constructor("tag:yaml.org,2002:map", _construct_config_map)
    FastConfigLoader = _FastConfigLoader

# Documents nested deeper than this are left to the pure loader (libyaml's composer recurses
# in C); config files nest some 8 levels.
FAST_DEPTH = 100


def _depth(text: str, limit: int) -> int:
    """How deep collections nest in `text`, read off libyaml's events (no recursion); once past
    `limit`, any number above it."""
    depth = deepest = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


def load_pure(text: str) -> Any:
    """`load` by the pure-Python loader alone (the reference the fast path is tested against)."""
    return yaml.load(text, Loader=ConfigLoader)


def load(text: str) -> Any:
    """The document in `text`, with dates as text and duplicate keys recorded."""
    if FastConfigLoader is not None and "\t" not in text:
        try:
            limit = sys.getrecursionlimit()
            depth = _depth(text, limit)
            if depth > limit:  # the pure loader's composer would recurse past the limit
                raise RecursionError("the document is nested too deeply")
            if depth <= FAST_DEPTH:
                return yaml.load(text, Loader=FastConfigLoader)
        except RecursionError:
            raise
        except Exception:  # any refusal: the pure loader gives the verdict, in its words
            pass
    return load_pure(text)
