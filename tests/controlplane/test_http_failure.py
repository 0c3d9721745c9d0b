"""Why an HTTP request got no answer, in words, against real loopback sockets."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from controlplane.http_failure import describe
from controlplane.render.apply import version_answer
from controlplane.rollout.sources import PrometheusSource, SourceError


def _failure(url: str, timeout_s: float) -> BaseException:
    try:
        urllib.request.urlopen(url, timeout=timeout_s).close()
    except (urllib.error.URLError, OSError) as exc:
        return exc
    raise AssertionError(f"{url} answered")


def test_refused_timed_out_and_unresolved_are_named(free_port: Callable[[], int]) -> None:
    refused = f"http://127.0.0.1:{free_port()}/"
    assert describe(_failure(refused, 2.0), 2.0) == "connection refused (nothing listens there)"
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        assert describe(_failure(url, 0.2), 0.2) == "timed out after 0.2 s"
    assert describe(_failure("http://name.invalid/", 2.0)).startswith("name not resolved")


def test_nginx_version_and_prometheus_name_the_cause(free_port: Callable[[], int]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert version_answer(f"{url}/__dualstack/version", None) == (None, "connection refused (nothing listens there)")
    with pytest.raises(SourceError, match=f"Prometheus at {url}: connection refused"):
        PrometheusSource(url).query("up", datetime.now(UTC))
