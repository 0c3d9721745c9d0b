import pytest

from controlplane.config.address import ListenAddress, parse_listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ListenAddress("127.0.0.1", 8080)),
        ("[::1]:8080", ListenAddress("::1", 8080)),
        (":9100", ListenAddress("0.0.0.0", 9100)),
        ("localhost:0", ListenAddress("localhost", 0)),
    ],
)
def test_parse_listen(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "::1:8080", "[::1]8080", "[zz]:80", "host:http", "h:70000",
                                  "h:\u0668\u0660\u0668\u0660", "h:080080"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=text.replace("[", r"\[").replace("]", r"\]")):
        parse_listen(text)


def test_str_round_trips() -> None:
    assert str(parse_listen("[::1]:80")) == "[::1]:80"
    assert parse_listen("127.0.0.1:1").url == "http://127.0.0.1:1"
