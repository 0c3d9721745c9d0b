"""What Express (with `cors()` and `express.json()`) does to every answer of v1, reproduced on aiohttp:
`X-Powered-By: Express`, `Access-Control-Allow-Origin: *`, preflights answered 204, a weak ETag on
every `res.send` body with 304 for a matching `If-None-Match`, `Keep-Alive: timeout=5` (the server
closes idle connections after 5 s: serve with KEEPALIVE_TIMEOUT_S), routes matched case-insensitively
with or without a trailing slash, HEAD served by GET routes, and HTML 404s (`Cannot GET /x`)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

KEEPALIVE_TIMEOUT_S = 5.0  # Node's http server default (server.keepAliveTimeout)
BODY_LIMIT_BYTES = 100 * 1024  # express.json()'s default limit
PREFLIGHT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]  # with the path parameters


def send_json(value: Any, status: int = 200) -> web.Response:
    """`res.status(n).json(value)`: compact JSON, as JSON.stringify writes it."""
    return web.Response(status=status, body=json.dumps(value, separators=(",", ":")).encode(),
                        content_type="application/json", charset="utf-8")


def send_text(text: str, status: int = 200) -> web.Response:
    """`res.send('OK')`: a string is sent as text/html."""
    return web.Response(status=status, body=text.encode(), content_type="text/html", charset="utf-8")


def error_page(status: int, message: str) -> web.Response:
    """finalhandler's page (404s, body-parser's 400 and 413)."""
    page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
            f"</head>\n<body>\n<pre>{html.escape(message)}</pre>\n</body>\n</html>\n")
    response = web.Response(status=status, body=page.encode(), content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def etag(body: bytes) -> str:
    """Express's weak ETag: length in hex and the SHA-1 in base64, cut to 27 characters."""
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]  # Express's choice, not a security one
    return f'W/"{len(body):x}-{digest}"'


def _fresh(request: web.Request, tag: str) -> bool:
    wanted = request.headers.get("If-None-Match")
    if wanted is None or request.method not in ("GET", "HEAD"):
        return False
    if wanted.strip() == "*":
        return True
    return tag.removeprefix("W/") in {t.strip().removeprefix("W/") for t in wanted.split(",")}


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """`express.json()`: a body is parsed only when it says it is JSON, else it is `{}`; bad JSON is a 400."""
    if request.content_type != "application/json":
        return {}
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_page(413, "PayloadTooLargeError: request entity too large")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return error_page(400, "Bad Request")
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class ExpressRouter:
    """Routes as Express matches them; whatever matches none is finalhandler's 404."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        regex = re.sub(r":(\w+)", r"(?P<\1>[^/]+)", path)
        self.routes.append(Route(method, re.compile(f"^{regex}/?$", re.IGNORECASE), handler))

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":  # cors(): every preflight, known path or not
            response = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = PREFLIGHT_METHODS
            asked = request.headers.get("Access-Control-Request-Headers")
            if asked:
                response.headers["Access-Control-Allow-Headers"] = asked
                response.headers["Vary"] = "Access-Control-Request-Headers"
            return response
        method = "GET" if request.method == "HEAD" else request.method
        for route in self.routes:
            match = route.pattern.match(request.path)
            if route.method == method and match:
                return _with_etag(request, await route.handler(request, match.groupdict()))
        return error_page(404, f"Cannot {request.method} {request.path}")


def _with_etag(request: web.Request, response: web.Response) -> web.StreamResponse:
    if response.status in (204, 304) or response.body is None or not isinstance(response.body, bytes):
        return response
    tag = etag(response.body)
    response.headers["ETag"] = tag
    if 200 <= response.status < 300 and _fresh(request, tag):
        not_modified = web.Response(status=304)
        not_modified.headers["ETag"] = tag
        return not_modified
    return response


async def _express_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Powered-By"] = "Express"
    response.headers["Access-Control-Allow-Origin"] = "*"
    if request.keep_alive:
        response.headers["Connection"] = "keep-alive"
        response.headers["Keep-Alive"] = f"timeout={KEEPALIVE_TIMEOUT_S:g}"


def express_app(router: ExpressRouter) -> web.Application:
    app = web.Application(client_max_size=BODY_LIMIT_BYTES)
    app.router.add_route("*", "/{tail:.*}", router.dispatch)
    app.on_response_prepare.append(_express_headers)
    return app
