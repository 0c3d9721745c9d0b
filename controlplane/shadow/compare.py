"""Comparing a primary answer with its shadow: normalise, then a structured diff by JSON path.

Pure functions. A Difference names the path, the kind (missing / extra / type_changed /
value_changed / status) and both values; the caller decides which paths are noise. A type
difference (`"149000.00"` on one side, `149000` on the other) is always its own kind, never folded
into a value difference, whatever the numeric tolerance.

Two ways to set a path aside:
- `ignore`: the value is not compared, but whether the field exists still is (either way, and
  whatever `ignore_extra_fields` says): a `paymentUrl` that differs per answer is fine, one that is
  absent on one side is a `missing` / `extra` difference.
- `ignore_entirely`: neither the value nor the presence is compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

DifferenceKind = Literal["status", "missing", "extra", "type_changed", "value_changed", "body"]

# The payment API's routes (v1's, as its clients use them, and v2's): an endpoint is one of these, or
# "other". A path a stranger sends never becomes a label or a report's heading of its own.
_TEMPLATES: Final = tuple((re.compile(pattern), template) for pattern, template in (
    (r"/orders/[^/\s]+/status", "/orders/{id}/status"),
    (r"/payment/create", "/payment/create"),
    (r"/webhooks/midtrans", "/webhooks/midtrans"),
    (r"/health(?:/ready|/live)?", None),
    (r"/openapi\.json", "/openapi.json"),
    (r"/admin/(?:login|orders|stats)", None),
    (r"/admin/orders/[^/\s]+", "/admin/orders/{id}"),
))
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def endpoint_template(method: str, path: str) -> str:
    """`GET /orders/261225AB12CD/status` -> `GET /orders/{id}/status`: one of the API's routes with
    its ids replaced, else `<METHOD> other`; bounded, never a raw path (`path` as sent, still
    %-escaped, so an escaped `/` stays inside its segment)."""
    verb = method if method in _METHODS else "OTHER"
    for pattern, template in _TEMPLATES:
        if pattern.fullmatch(path):
            return f"{verb} {template or path}"
    return f"{verb} other"


@dataclass(frozen=True, slots=True)
class Normalisation:
    """Declared in the routing file per tenant: what differences do not count."""

    ignore: frozenset[str] = frozenset()  # JSON paths, e.g. "$.token"; "$.a[*].b" matches every item
    ignore_entirely: frozenset[str] = frozenset()  # neither value nor presence compared
    case_insensitive: frozenset[str] = frozenset()
    numeric_tolerance: float = 0.0  # absolute
    ignore_extra_fields: bool = True  # fields only the shadow has are compatible additions


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    kind: DifferenceKind
    primary: Any = None
    shadow: Any = None


@dataclass(frozen=True, slots=True)
class Comparison:
    differences: tuple[Difference, ...] = field(default_factory=tuple)

    @property
    def matches(self) -> bool:
        return not self.differences


def _generic(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path)


def listed(path: str, paths: frozenset[str]) -> bool:
    """Whether a concrete path (`$.items[3].at`) is one of `paths`, itself or as `$.items[*].at`."""
    return path in paths or _generic(path) in paths


def _walk(primary: Any, shadow: Any, path: str, rules: Normalisation) -> Iterator[Difference]:
    if listed(path, rules.ignore) or listed(path, rules.ignore_entirely):
        return
    if isinstance(primary, dict) and isinstance(shadow, dict):
        for key in primary.keys() | shadow.keys():
            child = f"{path}.{key}"
            if listed(child, rules.ignore_entirely):
                continue
            # A field whose value is ignored is a field both sides are known to have: its absence
            # on either side counts, even where extra fields otherwise do not.
            declared = listed(child, rules.ignore)
            if key not in shadow:
                yield Difference(child, "missing", primary[key], None)
            elif key not in primary:
                if declared or not rules.ignore_extra_fields:
                    yield Difference(child, "extra", None, shadow[key])
            elif declared:
                continue
            else:
                yield from _walk(primary[key], shadow[key], child, rules)
        return
    if isinstance(primary, list) and isinstance(shadow, list):
        for index in range(max(len(primary), len(shadow))):
            child = f"{path}[{index}]"
            if index >= len(shadow):
                yield Difference(child, "missing", primary[index], None)
            elif index >= len(primary):
                yield Difference(child, "extra", None, shadow[index])
            else:
                yield from _walk(primary[index], shadow[index], child, rules)
        return
    numbers = (int, float)
    if isinstance(primary, numbers) and isinstance(shadow, numbers) and not isinstance(primary, bool) \
            and not isinstance(shadow, bool):
        if abs(primary - shadow) > rules.numeric_tolerance:
            yield Difference(path, "value_changed", primary, shadow)
        return
    if type(primary) is not type(shadow):
        yield Difference(path, "type_changed", primary, shadow)
        return
    if isinstance(primary, str) and listed(path, rules.case_insensitive):
        if primary.casefold() != shadow.casefold():
            yield Difference(path, "value_changed", primary, shadow)
        return
    if primary != shadow:
        yield Difference(path, "value_changed", primary, shadow)


def compare(primary_status: int, primary_body: bytes, shadow_status: int, shadow_body: bytes,
            rules: Normalisation) -> Comparison:
    if primary_status == shadow_status and primary_body == shadow_body:
        return Comparison()  # byte-identical: nothing to parse
    differences: list[Difference] = []
    if primary_status != shadow_status:
        differences.append(Difference("status", "status", primary_status, shadow_status))
    try:
        primary_json, shadow_json = json.loads(primary_body), json.loads(shadow_body)
    except (ValueError, UnicodeDecodeError):
        if primary_body != shadow_body:
            differences.append(Difference("body", "body", len(primary_body), len(shadow_body)))
        return Comparison(tuple(differences))
    differences.extend(sorted(_walk(primary_json, shadow_json, "$", rules), key=lambda d: d.path))
    return Comparison(tuple(differences))
