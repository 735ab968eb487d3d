"""``docs/configuration.md``: every ``RETRAIN_*`` variable of the settings classes, with its type, constraints,
default and description (the fields' ``description``), group by group in the order of :class:`Settings`.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from retrain.reference.markdown import code, header, table, wrap
from retrain.settings import Settings

# Variables read by something other than the settings classes: (variable, read by, meaning).
_READ_ELSEWHERE = [
    [
        "`RETRAIN_LOG_LEVEL`",
        "every `retrain` command",
        "Log level, default `WARNING`. `INFO` logs retrain events, swaps, restores and recoveries "
        "(kafka-python's own logs stay at `WARNING`); `retrain -v` logs everything at `DEBUG`.",
    ],
    [
        "`MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD`",
        "MLflow's client",
        "Credentials of an MLflow registry (`RETRAIN_REGISTRY_URI`); a URI that carries credentials is refused.",
    ],
    [
        "`RETRAIN_TEST_BOOTSTRAP_SERVERS`",
        "the integration tests",
        "A broker to run them against, instead of the one their fixture starts.",
    ],
    [
        "`RETRAIN_TEST_BROKER_PORT`",
        "the integration tests",
        "Port of the broker their fixture starts (default 19092); pytest-xdist worker N uses this + 1000 N.",
    ],
    [
        "`RETRAIN_TEST_KAFKA_CLIENTS`",
        "the integration tests",
        "Comma-separated Kafka clients to run them under (default `kafka-python,confluent-kafka`).",
    ],
]


def render_configuration() -> str:
    groups = _groups()
    parts = _introduction(groups)
    for name, settings_class in groups:
        parts += _group_section(name, settings_class)
    parts += [
        "",
        "## Read outside the settings classes",
        "",
        table(["variable", "read by", "meaning"], _READ_ELSEWHERE),
    ]
    return "\n".join(parts) + "\n"


def env_names(settings_class: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field reads, the first the one to document."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice.upper() for choice in alias.choices if isinstance(choice, str) and choice.isupper()]
    if isinstance(alias, str):
        return [alias.upper()]
    return [f"{settings_class.model_config['env_prefix']}{name}".upper()]


def _groups() -> list[tuple[str, type[BaseSettings]]]:
    """(group name, settings class) in the order of :class:`Settings`."""
    groups: list[tuple[str, type[BaseSettings]]] = []
    for name, field in Settings.model_fields.items():
        factory = field.default_factory
        assert isinstance(factory, type) and issubclass(factory, BaseSettings), name
        groups.append((name, factory))
    return groups


def _introduction(groups: list[tuple[str, type[BaseSettings]]]) -> list[str]:
    parts = [
        header("retrain/settings/"),
        "# Configuration\n",
        wrap(
            """Everything is an environment variable with the prefix `RETRAIN_`, one group per concern (one
            pydantic-settings class each in `retrain/settings/`), read and validated once when a command starts.
            Names are case-insensitive. An invalid value stops the command with exit code 2 and a message naming the
            variable. `retrain config` prints the effective configuration as JSON, secrets masked."""
        ),
        "",
        wrap(
            """Each table lists a group's variables in the order of its class: the type and its constraints, the
            default, and what the variable does. *Unset* means the variable has no value unless you give it one."""
        ),
        "",
        "| group | prefix |",
        "|---|---|",
    ]
    for name, settings_class in groups:
        prefix = settings_class.model_config["env_prefix"]
        parts.append(f"| [{name}](#{name}) | `{prefix}*` |")
    return parts


def _group_section(name: str, settings_class: type[BaseSettings]) -> list[str]:
    rows = []
    for field_name, field in settings_class.model_fields.items():
        env = [code(variable) for variable in env_names(settings_class, field_name, field)]
        variable = env[0] + (f" (or {', '.join(env[1:])})" if len(env) > 1 else "")
        kind = _python_type(field.annotation)
        limits = _constraints(field)
        if limits:
            kind += f" ({', '.join(limits)})"
        rows.append([variable, kind, _default(field_name, field), field.description or ""])
    table_text = table(["variable", "type", "default", "description"], rows)
    return ["", f"## {name}", "", wrap(settings_class.__doc__ or ""), "", table_text]


def _python_type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        return " or ".join(_python_type(member) for member in members)
    if origin is Literal:
        values = [code(str(value)) for value in get_args(annotation)]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", SecretStr: "secret"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraints(field: FieldInfo) -> list[str]:
    found = []
    for item in field.metadata:
        for kind, attribute, symbol in (
            (annotated_types.Ge, "ge", ">="),
            (annotated_types.Gt, "gt", ">"),
            (annotated_types.Le, "le", "<="),
            (annotated_types.Lt, "lt", "<"),
        ):
            if isinstance(item, kind):
                found.append(f"{symbol} {_number(getattr(item, attribute))}")
        pattern = getattr(item, "pattern", None)
        if pattern is not None:
            found.append(f"pattern {code(pattern)}")
    return found


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value}"


def _duration(name: str, value: Any) -> str:
    """`(7 days)` after a default in milliseconds or seconds, when it is a whole number of days, hours or minutes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if name.endswith("_ms"):
        seconds = value / 1000
    elif name.endswith("_s"):
        seconds = float(value)
    else:
        return ""
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f" ({count} {unit}{'s' if count > 1 else ''})"
    return ""


def _default(name: str, field: FieldInfo) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, int | float):
        return code(_number(value)) + _duration(name, value)
    if isinstance(value, Path):
        return code(value.as_posix())
    if value == "":
        return "empty"
    return code(str(value))
