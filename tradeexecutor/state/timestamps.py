"""ISO 8601 encoding of UTC datetimes for state fields, shared by dataclasses-json and the fast codec."""

from __future__ import annotations

from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from dataclasses_json import config


def encode_datetime(value: datetime | None) -> str | None:
    """``2004-08-20T00:00:00+00:00``: exact, sortable and readable in the JSON file."""
    if value is None:
        return None
    return value.isoformat()


def decode_datetime(value: Any) -> datetime | None:
    """Inverse of encode_datetime; a naive value is taken as UTC."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def datetime_field(default: Any = None) -> Any:
    """A dataclass field holding a UTC datetime, encoded as ISO 8601 text."""
    return field(default=default, metadata=config(encoder=encode_datetime, decoder=decode_datetime))


def required_datetime_field() -> Any:
    """Like datetime_field, without a default."""
    return field(metadata=config(encoder=encode_datetime, decoder=decode_datetime))
