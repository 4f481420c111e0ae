"""Request input: the pydantic models and types the routes declare are what is checked, and a failed
check is told as ``"<field>: <problem>"`` (each surface wraps it in its documented error body).

The checks here are about shape: JSON types taken as they are (``"10"`` is not an integer), numbers
within what their protobuf field can carry, text that is valid Unicode. Every rule about values
(which tiers exist, how long a message may be, whether an amount is affordable) is the core's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Body(BaseModel):
    """Base of every request body model: strict JSON types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


def _unicode(value: str) -> str:
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
"""A string (JSON allows lone surrogate escapes; protobuf strings, and the core, do not)."""
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A non-negative integer that fits a protobuf ``uint32``."""
UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
"""A non-negative integer that fits a protobuf ``uint64``."""
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""An integer that fits a protobuf ``int64``."""
Number = Annotated[float, Field(allow_inf_nan=False)]
"""A finite number (Python's JSON reader takes ``NaN`` and ``Infinity``; they would poison figures)."""


def _field(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "header", "path", "cookie"):
        source = parts.pop(0)
        if source == "body" and parts and isinstance(parts[0], int):
            parts = []  # a JSON syntax error's position, not a field
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


_TYPES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "missing": "required",
}


def _problem(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in _TYPES:
        return _TYPES[kind]
    if kind == "json_invalid":
        return f"malformed JSON ({ctx.get('error', 'not JSON')})"
    if kind == "greater_than_equal":
        return "must not be negative" if ctx.get("ge") == 0 else f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "value_error":
        return str(ctx.get("error", error.get("msg", "invalid")))
    msg = str(error.get("msg", "invalid"))
    return msg[:1].lower() + msg[1:]


def problem(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(field, "<field>: <problem>")`` for the first of pydantic's (or FastAPI's) errors."""
    if not errors:
        return "body", "body: invalid"
    first = errors[0]
    field = _field(first.get("loc", ()))
    return field, f"{field}: {_problem(first)}"
