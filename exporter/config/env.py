"""`${VAR}` and `${VAR:-default}` expansion in the string values of a parsed config.

Expansion happens after YAML parsing, so a secret full of YAML-special characters is safe.
Mapping keys are never expanded. A value that came out of an expansion is an `Expanded` string
(it remembers the text as written, for messages, and may stand for a number or a boolean); a
reference that cannot be resolved becomes `Unresolved`, reported when the checker reaches its
key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.config.yamlsafe import YamlMapping

_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Expanded(str):
    """A string value that came out of `${...}` expansion; `source` is the text as written."""

    source: str

    def __new__(cls, value: str, source: str) -> Expanded:
        obj = super().__new__(cls, value)
        obj.source = source
        return obj


@dataclass(frozen=True)
class Unresolved:
    """A string value whose expansion failed; reported when the checker reaches its key."""

    reason: str


def expand(text: str, env: Mapping[str, str]) -> str | Unresolved:
    """`${VAR}`, `${VAR:-default}` (default also when VAR is empty) and `$$` in one string value."""
    if "$" not in text:
        return text
    out: list[str] = []
    missing: list[str] = []
    referenced = False
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            i = dollar + 2
        elif following == "{":
            match = _VAR_REF.match(text, dollar)
            if match is None:
                return Unresolved(
                    "invalid ${...} reference (write ${NAME}, ${NAME:-default}, or $$ for a $)"
                )
            referenced = True
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if default is not None and not value:
                value = default
            if value is None:
                missing.append(name)
                value = ""
            out.append(value)
            i = match.end()
        else:  # a lone `$` (e.g. the end anchor of a regex) stays as written
            out.append("$")
            i = dollar + 1
    if missing:
        names = sorted(set(missing))
        if len(names) == 1:
            return Unresolved(f"environment variable {names[0]} is not set")
        return Unresolved(f"environment variables {', '.join(names)} are not set")
    result = "".join(out)
    return Expanded(result, text) if referenced else result


def expand_tree(node: Any, env: Mapping[str, str], seen: dict[int, Any]) -> Any:
    """A copy of the parsed tree with every string value expanded (mapping keys are left alone).

    Shared nodes (YAML aliases) are expanded once, which also makes self-referencing aliases safe.
    """
    if isinstance(node, str):
        return expand(node, env)
    if not isinstance(node, list | dict):
        return node
    done = seen.get(id(node))
    if done is not None:
        return done
    if isinstance(node, list):
        new_list: list[Any] = []
        seen[id(node)] = new_list
        new_list.extend(expand_tree(item, env, seen) for item in node)
        return new_list
    new_dict: dict[Any, Any] = {}
    if isinstance(node, YamlMapping):
        new_dict = YamlMapping()
        new_dict.duplicates = dict(node.duplicates)
    seen[id(node)] = new_dict
    for key, value in node.items():
        new_dict[key] = expand_tree(value, env, seen)
    return new_dict
