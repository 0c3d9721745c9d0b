"""Diffy's rule for noise: the primary must differ from itself about as often as from the shadow."""

from __future__ import annotations

from controlplane.config.model import DEFAULT_STATE_FIELDS
from controlplane.state.shadow_noise import NoiseLearner

STATE = frozenset(DEFAULT_STATE_FIELDS)
ENDPOINT = "GET /orders/{id}/status"


def learner_with(pp_pairs: int, pp_diffs: int, ps_pairs: int, ps_diffs: int, path: str) -> NoiseLearner:
    learner = NoiseLearner()
    for i in range(pp_pairs):
        learner.record("shop", ENDPOINT, "primary", [path] if i < pp_diffs else [])
    for i in range(ps_pairs):
        learner.record("shop", ENDPOINT, "shadow", [path] if i < ps_diffs else [])
    return learner


def test_one_race_between_two_primary_reads_does_not_make_a_field_noise() -> None:
    # An order paid between the two reads once; the spelling differs on every shadow answer.
    learner = learner_with(15, 1, 300, 300, "$.order.note")
    assert learner.noise("shop", ENDPOINT, ["$.order.note"], STATE) == set()


def test_a_field_that_differs_as_often_between_primaries_is_noise() -> None:
    learner = learner_with(20, 20, 300, 300, "$.generatedAt")
    assert learner.learned("shop", ENDPOINT, STATE) == {"$.generatedAt"}
    # Within 20 % of the shadow's rate: still noise; beyond it: a real difference on top of the noise.
    assert learner_with(100, 85, 100, 100, "$.at").learned("shop", ENDPOINT, STATE) == {"$.at"}
    assert learner_with(100, 50, 100, 100, "$.at").learned("shop", ENDPOINT, STATE) == set()
    # The absolute threshold: a field both sides differ on a tiny bit more rarely than 0.03 % apart.
    assert learner_with(10000, 1, 10000, 3, "$.at").learned("shop", ENDPOINT, STATE) == {"$.at"}


def test_state_fields_and_the_status_are_never_noise() -> None:
    for path in ("$.order.status", "$.order.totalAmount", "$.success", "status"):
        learner = learner_with(20, 20, 20, 20, path)
        assert learner.noise("shop", ENDPOINT, [path], STATE) == set(), path
    # A tenant that declares other state fields.
    learner = learner_with(20, 20, 20, 20, "$.order.status")
    assert learner.learned("shop", ENDPOINT, frozenset({"$.order.paidAt"})) == {"$.order.status"}


def test_totals_read_back_replace_the_shared_part_and_keep_unwritten_pairs() -> None:
    a, b = NoiseLearner(), NoiseLearner()
    for _ in range(5):
        a.record("shop", ENDPOINT, "primary", ["$.at"])
        a.record("shop", ENDPOINT, "shadow", ["$.at"])
    rows = a.take_pending()
    b.record("shop", ENDPOINT, "shadow", [])  # b's own pair, not written yet
    b.adopt(rows)
    assert b.learned("shop", ENDPOINT, STATE) == {"$.at"}
    assert b.take_pending() == [("shop", ENDPOINT, "", 0, 1)]
