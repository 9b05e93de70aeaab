"""Everything a user hands the fake, checked before it can reach a stream.

JSON is parsed strictly (no NaN or Infinity, no number too big for a float, bounded nesting), and
control-API bodies are validated against one published schema (``schemas/control.schema.json``,
whose faults are the fixture schema's), so a bad value is a 400 that names the field, never a
stream that crashes later.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any, Callable

import jsonschema
from referencing import Registry, Resource

from .errors import FakeRtzrError

MAX_JSON_DEPTH = 64  # control bodies and call.json nest 4 deep; this is generous


def _schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("fakertzr").joinpath(f"schemas/{name}").read_text("utf-8"))


@cache
def _registry() -> Registry:
    resources_ = [Resource.from_contents(_schema(n)) for n in ("call.schema.json", "control.schema.json")]
    return Registry().with_resources((r.id(), r) for r in resources_)  # type: ignore[misc]


@cache
def _validator(definition: str) -> jsonschema.Draft202012Validator:
    control = _schema("control.schema.json")
    ref = {"$ref": f"{control['$id']}#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(ref, registry=_registry())


class _NotANumber(ValueError):
    """A number JSON does not have: NaN, Infinity, or a literal past a float's range (``1e400``, which
    Python would make infinity)."""


def _reject_constant(name: str) -> float:
    raise _NotANumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(f"{text[:30]} is too large for a number")
    return value


def _place_of_bad_number(text: str | bytes) -> str:
    """``field[2].other: `` for the first NaN, Infinity or too large number, found by parsing again with a marker
    in its place (only on that error path); empty if it cannot be placed."""
    marker = object()
    marked: list[bool] = []

    def mark(value: float) -> Any:
        if math.isfinite(value) or marked:
            return value
        marked.append(True)
        return marker

    try:
        doc = json.loads(text, parse_constant=lambda name: mark(float(name)), parse_float=lambda t: mark(float(t)))
    except (ValueError, RecursionError):
        return ""
    path = first_path(doc, "", lambda node: node is marker)
    return f"{path.lstrip('.') or '(top level)'}: " if path is not None else ""


def _depth(doc: Any) -> int:
    """Nesting depth, iteratively (a recursive walk would be the very RecursionError we guard against)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def loads_strict(text: str | bytes, where: str) -> Any:
    """Parse JSON as the spec has it (RFC 8259: no NaN/Infinity), at most ``MAX_JSON_DEPTH`` deep."""
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise FakeRtzrError(f"{where}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except UnicodeDecodeError as exc:
        raise FakeRtzrError(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise FakeRtzrError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except _NotANumber as exc:
        raise FakeRtzrError(f"{where}: {_place_of_bad_number(text) or 'invalid JSON: '}{exc}") from None
    except ValueError as exc:
        raise FakeRtzrError(f"{where}: invalid JSON: {exc}") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise FakeRtzrError(f"{where}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return doc


def first_path(doc: Any, path: str, found: Callable[[Any], bool]) -> str | None:
    """``path.field[2].other``: where in ``doc`` the first value ``found`` holds for is (iteratively: no
    RecursionError on deep documents)."""
    stack = [(doc, path)]
    while stack:
        node, where = stack.pop()
        if found(node):
            return where
        if isinstance(node, dict):
            stack.extend(reversed([(v, f"{where}.{k}") for k, v in node.items()]))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed([(v, f"{where}[{i}]") for i, v in enumerate(node)]))
    return None


def non_finite_path(doc: Any, path: str) -> str | None:
    """The path of the first NaN or infinity in ``doc`` (Python callers can pass them; JSON cannot)."""
    return first_path(doc, path, lambda node: isinstance(node, float) and not math.isfinite(node))


def large_number(doc: Any, path: str, limit: float) -> tuple[str, int | float] | None:
    """Where the first number in ``doc`` over ``limit`` in size is, and the number (JSON integers have no
    bound: 10**400 parses, and overflows the first float it meets)."""
    seen: list[int | float] = []

    def large(node: Any) -> bool:
        if isinstance(node, (int, float)) and not isinstance(node, bool) and abs(node) > limit:
            seen.append(node)
            return True
        return False

    place = first_path(doc, path, large)
    return None if place is None else (place, seen[0])


def number_text(value: Any) -> str:
    """A number as a message shows it: ``1e+300``, ``a 401-digit number``, not four hundred digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {int(math.log10(abs(value))) + 1}-digit number"  # str() refuses over 4300 digits
    if isinstance(value, float) and abs(value) >= 1e15:
        return f"{value:g}"
    return repr(value)


def where(error: jsonschema.ValidationError, prefix: str) -> str:
    """``prefix.field[2].other``: the place of a schema violation."""
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def check(definition: str, doc: Any, prefix: str) -> None:
    """Raise :class:`FakeRtzrError` naming the field of the first violation of ``$defs/<definition>``."""
    if (bad := non_finite_path(doc, prefix)) is not None:
        raise FakeRtzrError(f"{bad}: must be a finite number")
    errors = sorted(_validator(definition).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise FakeRtzrError(f"{where(errors[0], prefix)}: {message(errors[0])}")


def message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, bounded; a ``not`` says what is wanted (its schema's description)."""
    if error.validator == "not":
        text = f"{str(error.instance)[:40]} is not allowed: {error.schema.get('description', 'see the schema')}"
    elif error.validator == "anyOf" and "description" in error.schema:  # a fault's times: a number or "unlimited"
        shown = repr(error.instance[:40]) if isinstance(error.instance, str) else number_text(error.instance)[:40]
        text = f"{shown} is not allowed: {error.schema['description']}"
    elif error.validator in ("maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"):
        text = error.message.replace(repr(error.instance), number_text(error.instance), 1)
    else:
        text = error.message
    return text if len(text) <= 200 else text[:200] + "..."
