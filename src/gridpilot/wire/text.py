"""Ids and free text an agent sends: checked or made storable (PostgreSQL
text holds no NUL)."""

from __future__ import annotations

from gridpilot.core.errors import ValidationFailed

MAX_ID_CHARS = 200  # ids and names an agent declares (site, gateway, asset)


def check_text(field: str, value: str, limit: int = MAX_ID_CHARS) -> None:
    """Text PostgreSQL can store (no NUL) of a sane length; ValidationFailed names the field."""
    if "\x00" in value:
        raise ValidationFailed(f"{field} contains a NUL character", field=field)
    if len(value) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters", field=field)


def clean_text(value: str, limit: int) -> str:
    """Free text from an agent (a detail, an actor), storable: NUL replaced, cut to limit."""
    return value.replace("\x00", "\ufffd")[:limit]


def is_id(value: str) -> bool:
    """An id as the agent may send one back (no NUL, not overlong)."""
    return "\x00" not in value and len(value) <= MAX_ID_CHARS
