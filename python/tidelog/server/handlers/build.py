"""Building kio messages for any version from one set of values.

Each version of a Kafka message is its own kio dataclass with its own fields; `make` drops the
values a version does not have, and `element` finds the class of a nested field, so one handler
body serves every version.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from tidelog.core.stats import record_errors
from tidelog.protocol import apis


@functools.cache
def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def has(cls: type, name: str) -> bool:
    return name in _fields(cls)


def make(cls: type, **values: Any) -> Any:
    fields = _fields(cls)
    return cls(**{name: value for name, value in values.items() if name in fields})


@functools.cache
def element(cls: type, name: str) -> Any:
    """The dataclass held by field `name`: `tuple[X, ...]`, `X | None` or `X` gives X."""
    kind = _fields(cls)[name].type
    for candidate in (
        kind,
        *typing.get_args(kind),
        *(a for arg in typing.get_args(kind) for a in typing.get_args(arg)),
    ):
        if dataclasses.is_dataclass(candidate):
            return candidate
    raise TypeError(f"{cls.__name__}.{name} holds no message class")


def response(api_key: int, version: int, **values: Any) -> bytes:
    """The encoded response of `api_key` at `version`, from values for any version's fields.
    Its top-level error code, if it has one, counts in the request metrics."""
    if "error_code" in values:
        record_errors((values["error_code"],))
    return apis.encode_response(api_key, version, make(apis.response_class(api_key, version), **values))
