"""Hostile YAML: every document an attacker or a slip can write is a ConfigError, located, bounded."""

from __future__ import annotations

import pytest

from controlplane.config import ConfigError
from controlplane.config.load import MAX_DEPTH, MAX_NODES, parse_document

BASE = 'upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}\nbase_domain: agentbar.ai\n'


def laughs(levels: int) -> str:
    """The "billion laughs" document: each level's anchor repeats the previous nine times."""
    lines = ["l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_document(text, "routing.yaml")
    return [str(issue) for issue in info.value.issues]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 13 bytes that refer to themselves: composing them recursed until RecursionError
        ("x: &a [*a]\n", ["routing.yaml:1: (document): invalid YAML: aliases (*a) are not allowed: "
                          "write the value out"]),
        # 9**6 = 531,441 copies of "ha" from 400 bytes (9**9 and the router ran out of memory)
        (laughs(6), ["routing.yaml:2: (document): invalid YAML: aliases (*l0) are not allowed: "
                     "write the value out"]),
        ("tenants: {a: &t {backend: v1}, b: *t}\n",
         ["routing.yaml:1: (document): invalid YAML: aliases (*t) are not allowed: write the value out"]),
        # nesting deeper than the recursion limit: RecursionError
        ("a: " + "[" * 900 + "]" * 900 + "\n",
         [f"routing.yaml:1: (document): invalid YAML: nested deeper than {MAX_DEPTH} levels"]),
        ("".join(" " * i + f"k{i}:\n" for i in range(1200)) + " " * 1200 + "x\n",
         [f"routing.yaml:{MAX_DEPTH + 1}: (document): invalid YAML: nested deeper than {MAX_DEPTH} levels"]),
        # int() of more than 4,300 digits raises ValueError
        (BASE + "shadow: {queue_size: " + "7" * 5000 + "}\n",
         ["routing.yaml:3: shadow.queue_size: number of 5000 characters is too long (at most 32)"]),
        (BASE + "x: 0b" + "1" * 40 + "\n", ["routing.yaml:3: x: number of 42 characters is too long (at most 32)"]),
        # a timestamp that is no date: ValueError from datetime
        (BASE + "tenants:\n  a: {backend: v1, since: 2024-13-45}\n",
         ["routing.yaml:4: tenants.a.since: '2024-13-45' cannot be read as timestamp: month must be in 1..12"]),
        ("a: [" + "0, " * MAX_NODES + "0]\n", [f"routing.yaml:1: (document): invalid YAML: more than {MAX_NODES} values"]),
    ],
    ids=["self-alias", "billion-laughs", "alias", "deep-flow", "deep-block", "5000-digits", "long-binary",
         "bad-timestamp", "too-many-values"],
)
def test_hostile_documents_are_config_errors(text: str, expected: list[str]) -> None:
    assert issues_of(text) == expected


def test_a_tag_on_a_mapping_a_list_or_a_key_is_reported_and_the_plain_data_still_read() -> None:
    """Dropped without a word before, the data read as plain; now each is an issue, and validation
    still runs on the plain data, so the file's other problems show in the same pass."""
    doc = parse_document(BASE + "tenants: !!python/object:os.system {a: {backend: v1}}\nl: !!set [1]\n"
                         "m: !!map {x: 1}\n!!python/name:os.system x: 1\n!!str y: 2\nz: {!custom k: 3}\n",
                         "routing.yaml")
    assert [str(issue) for issue in doc.issues] == [
        "routing.yaml:3: tenants: the tag !!python/object:os.system is not allowed: write plain YAML",
        "routing.yaml:4: l: the tag !!set is not allowed: write plain YAML",
        "routing.yaml:6: x: the tag !!python/name:os.system is not allowed on a key: write plain YAML",
        "routing.yaml:8: z.k: the tag !custom is not allowed on a key: write plain YAML",
    ]
    assert doc.data["tenants"] == {"a": {"backend": "v1"}} and doc.data["m"] == {"x": 1}


def test_unreadable_values_are_all_reported_with_their_duplicates() -> None:
    text = BASE + "a: 2024-02-30\nb: 1\nb: 2\nc: " + "9" * 40 + ".5\n"
    assert issues_of(text) == [
        "routing.yaml:3: a: '2024-02-30' cannot be read as timestamp: day is out of range for month",
        "routing.yaml:5: b: duplicate key (first defined on line 4)",
        "routing.yaml:6: c: number of 42 characters is too long (at most 32)",
    ]


def test_an_anchor_without_an_alias_is_plain_data() -> None:
    doc = parse_document("a: &x [1, 2]\nb: 3\n", "routing.yaml")
    assert doc.data == {"a": [1, 2], "b": 3}


def test_nesting_up_to_the_bound_loads() -> None:
    depth = MAX_DEPTH - 1
    doc = parse_document("a: " + "[" * depth + "1" + "]" * depth + "\n", "routing.yaml")
    value = doc.data["a"]
    for _ in range(depth):
        value = value[0]
    assert value == 1


def test_integers_read_as_yaml_1_1_reads_them() -> None:
    """Plain decimals take a short path; every other spelling is the constructor's (a leading 0 is octal)."""
    doc = parse_document("a: [0, 7, 012, 1_000, 0x10, +5, -3, 190:20:30, 99999999999999999999]\n", "routing.yaml")
    assert doc.data == {"a": [0, 7, 10, 1000, 16, 5, -3, 685230, 99999999999999999999]}
