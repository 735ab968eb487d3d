"""A field's JSON Schema in words, for the tables of ``docs/events.md``: its type, bounds and description."""

from __future__ import annotations

import json
from typing import Any

from retrain.reference.markdown import code


def json_type(node: dict[str, Any], used: set[str]) -> str:
    """The type of a JSON Schema node, with its bounds; adds the names of the definitions it links to to ``used``."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        used.add(name)
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " or ".join(json_type(member, used) for member in node["anyOf"])
    if "const" in node:
        return code(json.dumps(node["const"]))
    if "enum" in node:
        return "one of " + ", ".join(code(str(value)) for value in node["enum"])
    kind = node.get("type")
    if kind == "string" and node.get("format") == "date-time":
        return "RFC 3339 date-time"
    text, details = _typed(kind, node, used)
    details = [detail for detail in details if detail]
    return text + (f" ({', '.join(details)})" if details else "")


def description(node: dict[str, Any]) -> str:
    """A node's description, or the first one of its ``anyOf`` members."""
    if "description" in node:
        return node["description"]
    for member in node.get("anyOf", []):
        if "description" in member:
            return member["description"]
    return ""


def _typed(kind: Any, node: dict[str, Any], used: set[str]) -> tuple[str, list[str]]:
    """The name of a node's ``type`` and the details of its bounds (some of them empty)."""
    details: list[str] = []
    if kind == "string":
        text = "string"
        details.append(_length(node, "characters", "minLength", "maxLength"))
        if "pattern" in node:
            details.append(f"pattern {code(node['pattern'])}")
    elif kind == "integer":
        text = "integer"
        if "minimum" in node and "maximum" in node:
            details.append(f"{_big(node['minimum'])} to {_big(node['maximum'])}")
        elif "minimum" in node:
            details.append(f">= {_big(node['minimum'])}")
    elif kind in ("number", "boolean", "null"):
        text = kind
    elif kind == "array":
        text = f"list of {json_type(node.get('items', {}), used)}"
        details.append(_length(node, "items", "minItems", "maxItems"))
    elif kind == "object":
        values = list(node.get("patternProperties", {}).values())
        keys = node.get("propertyNames", {})
        key_text = json_type({"type": "string", **keys}, used) if keys else "string"
        value_text = " or ".join(json_type(value, used) for value in values) if values else "any"
        text = f"object of name -> {value_text}; names: {key_text}"
        details.append(_length(node, "entries", "minProperties", "maxProperties"))
    else:
        text = json.dumps(node, sort_keys=True)
    return text, details


def _length(node: dict[str, Any], what: str, low: str, high: str) -> str:
    lower, upper = node.get(low), node.get(high)
    if lower is not None and upper is not None:
        return f"{lower}-{upper} {what}"
    if upper is not None:
        return f"at most {upper} {what}"
    if lower is not None:
        return f"at least {lower} {what}"
    return ""


def _big(value: int) -> str:
    """Powers of two and their neighbours as ``2^n``, ``2^n-1`` and ``-2^n``."""
    for power in range(31, 64):
        if value == 2**power:
            return f"2^{power}"
        if value == 2**power - 1:
            return f"2^{power}-1"
        if value == -(2**power):
            return f"-2^{power}"
    return f"{value}"
