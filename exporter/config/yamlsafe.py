"""The YAML loader of config files: PyYAML's safe loader, stricter in two ways.

- Dates stay text. A YAML 1.1 timestamp (`2026-01-01`) is not turned into a `date` while the
  document loads, so an impossible one (`2026-13-45`) is reported by the checker at its key,
  not as a failure of the whole document.
- Duplicate keys are remembered. YAML keeps the last of two equal keys silently; here every
  mapping is a `YamlMapping` that records, for each key given twice, the line of the repeat
  and of the first occurrence, and the checker refuses it.
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


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader without timestamps, whose mappings record duplicate keys."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - the class attribute PyYAML reads
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def _duplicates(self, node: yaml.MappingNode) -> dict[Any, tuple[int, int]]:
        first_line: dict[Any, int] = {}
        repeated: dict[Any, tuple[int, int]] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(self.construct_scalar(key_node))
            line = key_node.start_mark.line + 1
            if key in first_line:
                repeated.setdefault(key, (line, first_line[key]))
            else:
                first_line[key] = line
        return repeated

    def construct_config_map(self, node: yaml.MappingNode) -> Iterator[YamlMapping]:
        """Like SafeLoader's map constructor, into a YamlMapping with its duplicates."""
        data = YamlMapping()
        yield data
        repeated = self._duplicates(node)  # by the keys' text, before merge keys are flattened
        data.update(self.construct_mapping(node))
        for key in data:
            if str(key) in repeated:
                data.duplicates[key] = repeated[str(key)]


ConfigLoader.add_constructor("tag:yaml.org,2002:map", ConfigLoader.construct_config_map)


def load(text: str) -> Any:
    """The document in `text`, with dates as text and duplicate keys recorded."""
    return yaml.load(text, Loader=ConfigLoader)
