"""What the family modules share: checked fields of pool items."""

from __future__ import annotations

from typing import Any


def text_field(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise ValueError(f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {name!r} must be a non-empty string, got {value!r}")
    return value


def one_line(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"field {name!r} must be a single line")
    if value != value.strip():
        raise ValueError(f"field {name!r} has leading or trailing whitespace")
