"""FastAPI-style request validation: query values, path UUIDs and strict JSON bodies.

The real API is a FastAPI app, so its 422 bodies are ``{"detail": [{"loc", "msg", "type",
"input", "ctx"?}]}`` in pydantic v2's vocabulary. These helpers return such items (an empty list
means "valid") so the adapter can collect every problem of a request into one 422, as FastAPI does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

ErrorItem = dict[str, Any]
Loc = list[str | int]

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def error(
    loc: Loc, msg: str, type_: str, value: Any, ctx: dict[str, Any] | None = None
) -> ErrorItem:
    """One validation error item, shaped like pydantic v2's."""
    item: ErrorItem = {"type": type_, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        item["ctx"] = ctx
    return item


def missing(loc: Loc) -> ErrorItem:
    """A required field is absent."""
    return error(loc, "Field required", "missing", None)


def parse_bool(loc: Loc, raw: str) -> tuple[bool, list[ErrorItem]]:
    """Parse a query boolean the way FastAPI does (true/false, 1/0, yes/no, on/off…)."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True, []
    if lowered in _FALSE:
        return False, []
    msg = "Input should be a valid boolean, unable to interpret input"
    return False, [error(loc, msg, "bool_parsing", raw)]


def parse_bounded_int(loc: Loc, raw: str, *, ge: int, le: int) -> tuple[int, list[ErrorItem]]:
    """Parse an integer query value that must lie in ``ge..le``."""
    try:
        value = int(raw.strip())
    except ValueError:
        msg = "Input should be a valid integer, unable to parse string as an integer"
        return 0, [error(loc, msg, "int_parsing", raw)]
    if value < ge:
        msg = f"Input should be greater than or equal to {ge}"
        return value, [error(loc, msg, "greater_than_equal", raw, {"ge": ge})]
    if value > le:
        msg = f"Input should be less than or equal to {le}"
        return value, [error(loc, msg, "less_than_equal", raw, {"le": le})]
    return value, []


def check_uuid(loc: Loc, raw: str) -> list[ErrorItem]:
    """A path parameter declared ``format: uuid`` must parse as a UUID."""
    try:
        uuid.UUID(raw)
    except ValueError:
        msg = "Input should be a valid UUID, unable to parse string as a UUID"
        return [error(loc, msg, "uuid_parsing", raw)]
    return []


def check_choices(
    loc_prefix: Loc, values: Sequence[str], choices: Sequence[str]
) -> list[ErrorItem]:
    """Every value of a repeated query parameter must be one of ``choices``."""
    expected = " or ".join(repr(choice) for choice in choices)
    return [
        error(
            [*loc_prefix, index],
            f"Input should be {expected}",
            "enum",
            value,
            {"expected": expected},
        )
        for index, value in enumerate(values)
        if value not in choices
    ]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


class _NonStandardConstant(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently; a payload carrying one would make the
    # emulator a lenient oracle, so duplicates are an error here.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259) even though Python accepts them.
    raise _NonStandardConstant(name)


def parse_json_body(raw: bytes) -> tuple[Any, list[ErrorItem]]:
    """Parse a request body strictly: UTF-8, RFC 8259 only, no duplicate keys in any object."""
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        ), []
    except UnicodeDecodeError as exc:
        return None, [_json_invalid(exc.start, "Invalid UTF-8 in the request body")]
    except _DuplicateKey as exc:
        msg = f"Duplicate key {exc.key!r} in a JSON object"
        return None, [error(["body"], msg, "json_duplicate_key", exc.key)]
    except _NonStandardConstant as exc:
        return None, [_json_invalid(0, f"{exc} is not valid JSON")]
    except json.JSONDecodeError as exc:
        return None, [_json_invalid(exc.pos, exc.msg)]


def _json_invalid(position: int, reason: str) -> ErrorItem:
    return error(["body", position], "JSON decode error", "json_invalid", {}, {"error": reason})


def check_object(loc: Loc, value: Any) -> list[ErrorItem]:
    """The body (or a field) must be a JSON object."""
    if isinstance(value, dict):
        return []
    msg = "Input should be a valid dictionary or object to extract fields from"
    return [error(loc, msg, "model_attributes_type", value)]


def check_optional_object(loc: Loc, value: Any) -> list[ErrorItem]:
    """A field typed ``object | null``."""
    if value is None or isinstance(value, dict):
        return []
    return [error(loc, "Input should be a valid dictionary", "dict_type", value)]


def check_webhook_payload(value: Any) -> list[ErrorItem]:
    """``webhook_payload`` is ``list[object] | object | null``; report like pydantic's union errors."""
    if value is None or isinstance(value, dict):
        return []
    loc: Loc = ["body", "webhook_payload"]
    as_dict = error(
        [*loc, "dict[str,any]"], "Input should be a valid dictionary", "dict_type", value
    )
    if not isinstance(value, list):
        as_list = error(
            [*loc, "list[dict[str,any]]"], "Input should be a valid list", "list_type", value
        )
        return [as_list, as_dict]
    bad_items = [
        error(
            [*loc, "list[dict[str,any]]", index],
            "Input should be a valid dictionary",
            "dict_type",
            item,
        )
        for index, item in enumerate(value)
        if not isinstance(item, dict)
    ]
    return [*bad_items, as_dict] if bad_items else []
