"""v2's JSON answers: v1's shapes where v1 had one, `{success: false, error, message}` otherwise."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler


def json_error(status: int, error: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": error, "message": message, **extra}, status=status)


class JsonError(Exception):
    """Raised anywhere in a handler to answer with a JSON error (see the `json_errors` middleware)."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = json_error(status, error, message, **extra)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JsonError as exc:
        return exc.response
