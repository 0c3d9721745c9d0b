"""What a request carries, read within bounds: a small JSON body, whole numbers in a range, an order id.

Each refusal is a JsonError naming what was wrong (400, or 413 for a body past its size): nothing
an outsider sends is read without a limit.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from controlplane.order_id import ORDER_ID_RE
from proxy.v2.responses import JsonError


def query_number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name, str(default))
    if not (text.isdigit() and len(text) <= 12) or not low <= int(text) <= high:
        raise JsonError(400, "invalid_parameter", f"{name} must be a whole number from {low} to {high}")
    return int(text)


def order_id_param(request: web.Request) -> str:
    order_id = request.match_info["orderId"]
    if not ORDER_ID_RE.fullmatch(order_id):
        raise JsonError(400, "invalid_order_id", "an order id is 1-50 of A-Z a-z 0-9 . _ ~ -")
    return order_id


async def json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object of at most `max_bytes` (however it is framed); small bodies bound the
    parser's work, and nesting past the interpreter's recursion limit is refused, not raised."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise JsonError(413, "body_too_large", f"the body may be at most {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JsonError(413, "body_too_large", f"the body may be at most {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise JsonError(400, "invalid_body", "the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, max_chars: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise JsonError(400, "invalid_body", f"{name} must be a string of 1 to {max_chars} characters")
    return value
