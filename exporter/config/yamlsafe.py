"""The YAML loader of config files: PyYAML's safe loader, stricter in two ways.

- Dates stay text. A YAML 1.1 timestamp (`2026-01-01`) is not turned into a `date` while the
  document loads, so an impossible one (`2026-13-45`) is reported by the checker at its key,
  not as a failure of the whole document.
- Duplicate keys are remembered. YAML keeps the last of two equal keys silently; here every
  mapping is a `YamlMapping` that records, for each key given twice, the line of the repeat
  and of the first occurrence, and the checker refuses it.

Documents are parsed by libyaml, PyYAML's C parser, where PyYAML has it, and composed into
nodes by PyYAML's own Python composer: 1.4 ms for config.example.yaml against 12 ms for the
pure-Python loader. (libyaml's C composer is not used: it recurses in C and crashes the process
on a document nested some hundred thousand levels deep; the Python one raises RecursionError,
which the config loader reports as nesting too deep, as before.) A document libyaml refuses is
read again by the pure-Python loader, whose verdict and message are then the ones given. Both
loaders build the same values: tests/test_config_yaml.py compares them on mutated configs.
"""

from __future__ import annotations

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

    class _FastConfigLoader(yaml.composer.Composer, yaml.CSafeLoader):
        """The same loader on libyaml's parser (its events), composed by PyYAML's composer
        (first in line, so it replaces libyaml's) and constructed in Python."""

        yaml_implicit_resolvers = _RESOLVERS

        def __init__(self, stream: str) -> None:
            yaml.CSafeLoader.__init__(self, stream)
            yaml.composer.Composer.__init__(self)

    _FastConfigLoader.add_constructor("tag:yaml.org,2002:map", _construct_config_map)
    FastConfigLoader = _FastConfigLoader


def load_pure(text: str) -> Any:
    """`load` by the pure-Python loader alone (the reference the fast path is tested against)."""
    return yaml.load(text, Loader=ConfigLoader)


def load(text: str) -> Any:
    """The document in `text`, with dates as text and duplicate keys recorded."""
    if FastConfigLoader is not None:
        try:
            return yaml.load(text, Loader=FastConfigLoader)
        except RecursionError:
            raise  # (the pure loader's composer recurses alike, and its scanner takes seconds)
        except Exception:  # any refusal: the pure loader gives the verdict, in its words
            pass
    return load_pure(text)
