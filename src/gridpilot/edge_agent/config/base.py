"""Building blocks shared by the config models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="1-64 letters, digits, dots, underscores or dashes; starts alphanumeric",
    ),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


def rule_error(problems: list[tuple[Loc, str]]) -> PydanticCustomError:
    """A cross-field rule violation that still names each offending field.

    ``loc`` is relative to the model that raises it; the loader appends it to
    pydantic's own location to find the YAML line.
    """
    summary = "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems)
    return PydanticCustomError(
        "config_rule", "{summary}", {"summary": summary, "problems": problems}
    )


def duplicate_problems(
    values: Iterable[str], field: str, attr: str, noun: str
) -> list[tuple[Loc, str]]:
    """One problem per value seen before in the list ``field``, naming where it came first."""
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for i, value in enumerate(values):
        if value in first:
            problems.append(
                ((field, i, attr), f"duplicate {noun} {value!r} (first at {field}[{first[value]}])")
            )
        first.setdefault(value, i)
    return problems


class Strict(BaseModel):
    """Unknown keys are errors; a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
