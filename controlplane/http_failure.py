"""Why an HTTP request got no usable answer, in an operator's words: "connection refused", "timed out
after 3 s", "name not resolved", "HTTP 503", "answer is not JSON". Callers add where they asked
(a router's admin address, nginx's version URL, Prometheus), so a message names cause and place."""

from __future__ import annotations

import socket
import urllib.error


def describe(exc: BaseException, timeout_s: float | None = None) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(reason, TimeoutError):
        return "timed out" + (f" after {timeout_s:g} s" if timeout_s is not None else "")
    if isinstance(reason, socket.gaierror):
        return f"name not resolved ({reason.strerror})"
    if isinstance(reason, ConnectionResetError):
        return "connection reset (closed without an answer)"
    if isinstance(reason, ValueError):
        return "answer is not JSON"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason) or type(reason).__name__
