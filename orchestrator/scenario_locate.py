"""Turning pydantic's errors on a scenario into issues that point at a line of the file.

A validator that checks several fields raises `field_error(loc, message)` to name the field the user
has to change: pydantic itself would place a model validator's error on the model (a whole section,
or line 1 for the top level).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticCustomError
from yaml.nodes import Node, ScalarNode

from .issues import ScenarioIssue, quote
from .yaml_loader import Loc, format_loc, locate, position

__all__ = ["field_error", "pydantic_issue", "short_repr", "unknown_key_message"]

_LOCATED = "located"


def field_error(loc: Loc, message: str) -> PydanticCustomError:
    """An error for a model validator to raise, reported at `loc` below the model being validated."""
    # The message goes in the context, not the template: the template is formatted with the context,
    # and a message may hold braces.
    return PydanticCustomError(_LOCATED, "{message}", {"message": message, "at": list(loc)})


_MISSING = object()


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _model_at(root_model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root_model
    for part in loc:
        if isinstance(part, int):
            continue  # list index: same model as the list's items
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def short_repr(value: Any) -> str | None:
    """The value as it may be echoed in a message, or None when it is not a short plain value."""
    if value is None or isinstance(value, (bool, int, float, str)) or value in ([], {}):
        text = repr(value)
        if len(text) <= 40:
            return text
    return None


def pydantic_issue(err: Any, root: Node, data: Any, model: type[BaseModel], *,
                   strip_loc: Callable[[Loc, Any], Loc] | None = None,
                   member_at: Callable[[Loc, Any], type[BaseModel] | None] | None = None) -> ScenarioIssue:
    """One pydantic error (from `ValidationError.errors()`) of `model` validated from `data` (composed
    from `root`) as an issue at the deepest part of its path that the file has. Discriminated unions
    (chaos events, mechanisms) put their member's tag into the location, which is not a key of the
    file: `strip_loc` takes it out, and `member_at` names the member's class for unknown keys."""
    loc: Loc = tuple(err["loc"])
    if strip_loc is not None:
        loc = strip_loc(loc, data)
    kind: str = err["type"]
    if kind == _LOCATED:
        loc = loc + tuple(err["ctx"]["at"])
    if kind == "union_tag_invalid":  # a chaos event or mechanism nobody registered: point at its tag
        ctx = err.get("ctx") or {}
        field = str(ctx.get("discriminator", "")).strip("'")
        loc = loc + ((field,) if field else ())
        err = {**err, "type": "value_error",
               "msg": f"unknown {quote(ctx.get('tag'))}; expected one of {ctx.get('expected_tags')} (or a plugin "
                      "registered under its entry point)"}
        kind = "value_error"
    bad_key = kind == "invalid_key" or loc[-1:] == ("[key]",)
    if loc[-1:] == ("[key]",):
        loc = loc[:-1]

    # Point at the deepest part of the path that exists in the file: the key itself, or for a
    # missing key the mapping that should contain it.
    depth, mark, node = locate(root, loc)
    value_error = kind not in ("extra_forbidden", _LOCATED) and not bad_key
    if value_error and depth == len(loc) and isinstance(node, ScalarNode):
        mark = node.start_mark  # a bad value: point at the value, not its key
    line, column = position(mark)

    if bad_key:
        # Reported on the mapping, since `[1]` would read as a list index.
        message = f"key {quote(loc[-1])} must be text; put it in quotes"
        return ScenarioIssue(format_loc(loc[:-1]), line, column, message)
    if kind == "missing":
        message = "required key is missing"
    elif kind == "extra_forbidden":
        member = member_at(loc[:-1], data) if member_at is not None else None
        message = unknown_key_message(model, loc, member)
    elif kind == _LOCATED:
        message = err["ctx"]["message"]
    elif kind == "value_error":
        # Our validators already quote the value where that is safe to do.
        message = err["msg"].removeprefix("Value error, ")
    else:
        message = err["msg"]
        raw = _value_at(data, loc)
        got = short_repr(raw if raw is not _MISSING else err.get("input"))
        # Never echo anything under a key-ish name: it may be a secret.
        if got is not None and not any("key" in str(part) for part in loc):
            message += f" (got {got})"
    return ScenarioIssue(format_loc(loc), line, column, message)


def unknown_key_message(root_model: type[BaseModel], loc: Loc, member: type[BaseModel] | None = None) -> str:
    key = str(loc[-1])
    model = member or _model_at(root_model, loc[:-1])
    if model is None:
        return f"unknown key {quote(key)}"
    allowed = list(model.model_fields)
    message = f"unknown key {quote(key)} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message
