"""The HTTP/1.1 client core both users share: where an upstream is, how to connect to it, and how
its answers are framed.

- Endpoint: an upstream URL parsed once into host, port and, for https, the TLS context that
  verifies the backend's certificate.
- connect(): a connection within a timeout, its failures mapped to the error kinds the metrics use.
- ResponseParser: an asyncio.Protocol that frames answers with httptools (1xx skipped, keep-alive
  read from each final answer) and knows how many answers it is owed. A byte that starts an answer
  nobody asked for (a second answer in the packet of the first, or a late one before the next
  request) breaks the connection: it is never parsed as the next request's answer.

The streaming pool (pool.py) and the pipelined shadow channel (pipeline.py) are its two users.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar, cast
from urllib.parse import urlsplit

import httptools

# Below Node.js's default keep-alive of 5 s, so a reused connection is not one the backend is
# closing at that moment.
IDLE_TIMEOUT_S: Final = 4.0


class UpstreamError(Exception):
    """The exchange with the backend failed; `kind` is the metric label."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # connect | connect_timeout | pool_timeout | timeout | reset | bad_response
        self.message = message


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The system's trust store with certificate and host name checks, made once per process."""
    return ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: ssl.SSLContext | None  # None: plain text (http)

    @classmethod
    def of(cls, url: str, *, tls: ssl.SSLContext | None = None) -> Endpoint:
        """`tls` replaces the default verifying context for https (a private CA, a test's own);
        it is never used for http."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        return cls(parts.hostname or "", parts.port or (443 if secure else 80),
                   (tls or default_tls()) if secure else None)


P = TypeVar("P", bound=asyncio.Protocol)


async def connect(endpoint: Endpoint, protocol: Callable[[], P], timeout_s: float) -> P:
    """A connected protocol; raises UpstreamError(connect_timeout | connect). The timeout covers
    the TLS handshake too, and a certificate that fails verification is a `connect` failure."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(protocol, endpoint.host, endpoint.port, ssl=endpoint.tls), timeout_s)
    except TimeoutError:
        raise UpstreamError("connect_timeout", "did not accept the connection in time") from None
    except OSError:  # ssl.SSLError is one
        raise UpstreamError("connect", "refused or could not be reached") from None
    return conn


class _Unasked(Exception):
    """Raised inside the parser to stop it at the first byte of an answer nobody is owed."""


_UNASKED: Final = "answered more than it was asked"


class ResponseParser(asyncio.Protocol):
    """Frames the answers on one connection and counts how many are still owed.

    A user adds to `owed` for each request it writes, calls feed() from data_received, and
    implements on_body, _on_answer (a final answer is complete) and _on_broken (the connection can
    no longer be trusted; it must not carry another request). httptools calls only the callbacks a
    class defines: a user that relays the head adds on_status and on_header (see HeadCollector).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.owed = 0
        self.status = 0
        self.keep_alive = False
        self._informational = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def feed(self, data: bytes) -> bool:
        """Parse what arrived; False if it broke the connection."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._on_broken("protocol upgrades are not proxied")
            return False
        except httptools.HttpParserError as error:
            self._on_broken(_UNASKED if isinstance(error.__context__, _Unasked) else "sent an invalid HTTP response")
            return False
        return True

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self.owed:
            raise _Unasked

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # 100 Continue / 103 Early Hints: not the final answer; wait for the real one.
            self._informational = True
            self._skip_head()
            return
        self.status = status
        self._on_head()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.owed -= 1
        self.keep_alive = self._parser.should_keep_alive()
        self._on_answer()

    # -- what a user implements -------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        raise NotImplementedError

    def _skip_head(self) -> None:
        """An informational head was parsed; forget what it said."""

    def _on_head(self) -> None:
        """The final head is parsed: `status` is set."""

    def _on_answer(self) -> None:
        raise NotImplementedError

    def _on_broken(self, message: str) -> None:
        raise NotImplementedError


class HeadCollector(ResponseParser):
    """A ResponseParser that keeps the reason phrase and the headers of the final answer."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""
        self.headers: list[tuple[str, str]] = []

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def _skip_head(self) -> None:
        self.reason = ""
        self.headers = []
