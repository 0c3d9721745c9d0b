"""`python -m standins.echo --name v1 --listen HOST:PORT`: a backend that answers every request with
what it received (backend name, tenant header, method, path, request id, body size).

Used by the demo until real backends are started, and by ops to check what the router or nginx
sends upstream. It is a diagnostic backend, not a stand-in for v1 or v2.
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from controlplane.config.address import parse_listen


def create_echo_app(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({
            "backend": name,
            "tenant": request.headers.get("X-Tenant-Slug"),
            "method": request.method,
            "path": request.path_qs,
            "requestId": request.headers.get("X-Request-ID"),
            "forwardedFor": request.headers.get("X-Forwarded-For"),
            "bodyBytes": size,
        })

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.echo", description=__doc__)
    parser.add_argument("--name", required=True, help="the backend name to report, e.g. v1")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    ns = parser.parse_args(argv)
    address = parse_listen(ns.listen)
    web.run_app(create_echo_app(ns.name), host=address.host, port=address.port,
                access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
