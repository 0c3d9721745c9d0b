"""Origins as a browser sends them: normalized, whole-string, bounded."""

from __future__ import annotations

import pytest

from controlplane.config.origin import MAX_CORS_ORIGINS, OriginError, check_origins, host_origins, parse_origin


@pytest.mark.parametrize(("text", "origin"), [
    ("https://shop.example", "https://shop.example"),
    ("HTTPS://Shop.Example:443", "https://shop.example"),
    ("http://shop.example:80", "http://shop.example"),
    ("http://localhost:5173", "http://localhost:5173"),
    ("https://shop.example:080", "https://shop.example:80"),
])
def test_an_origin_is_normalized(text: str, origin: str) -> None:
    assert parse_origin(text) == origin


@pytest.mark.parametrize("text", ["*", "null", "shop.example", "https://shop.example/", "https://shop.example\n",
                                  " https://shop.example", "https://user@shop.example", "https://-x.example",
                                  "https://shop.example:0", "https://shop.example:65536", "ws://shop.example",
                                  "https://" + "a" * 300])
def test_what_is_no_origin_is_refused(text: str) -> None:
    with pytest.raises(OriginError):
        parse_origin(text)


def test_a_list_is_deduplicated_and_bounded() -> None:
    assert check_origins(["https://a.example", "HTTPS://A.example:443", "http://a.example"]) == (
        "https://a.example", "http://a.example")
    with pytest.raises(OriginError, match=f"at most {MAX_CORS_ORIGINS}"):
        check_origins(f"https://s{n}.example" for n in range(MAX_CORS_ORIGINS + 1))


def test_own_hosts_are_origins_over_both_schemes() -> None:
    assert host_origins(["a.agentbar.ai"]) == {"https://a.agentbar.ai", "http://a.agentbar.ai"}
