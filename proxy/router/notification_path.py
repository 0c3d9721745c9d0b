"""Which requests are Midtrans notifications: every request either backend would route to its
notification handler, not only the exact path.

v1 (Express) matches routes case-insensitively and with or without a trailing slash; v2 (aiohttp)
decodes percent-escapes before it matches; a proxy on the way (nginx) may merge repeated slashes or
resolve `.` and `..`. A request the router did not recognise as a notification would reach a backend
unverified, so the path is judged after all of those (over-matching costs nothing: nobody posts
anything else there). Pure and cheap: it runs on every request.
"""

from __future__ import annotations

import posixpath
import re
from typing import Final
from urllib.parse import unquote

WEBHOOK_PATH: Final = "/webhooks/midtrans"
_SLASHES: Final = re.compile(r"/{2,}")
_DECODE_ROUNDS: Final = 3  # a path encoded over and over is decoded this often, then judged as it is


def is_notification(method: str, path: str) -> bool:
    """`path`: the request's path, decoded once (aiohttp's `request.path`: no query, no scheme or host
    of an absolute-form target)."""
    if method != "POST" or ("midtrans" not in path.lower() and "%" not in path):
        return False
    return canonical_path(path) == WEBHOOK_PATH


def canonical_path(path: str) -> str:
    """The path as any backend or proxy on the way might read it, lower case."""
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    # Slashes merged first: normpath keeps a leading "//" (POSIX); it drops a trailing slash.
    return posixpath.normpath(_SLASHES.sub("/", "/" + path)).lower()
