"""Status lifecycle: transitions are data and are enforced in one place."""

from __future__ import annotations

import pytest

from tidings import model

S = model.EventStatus


def test_status_names_are_adobes() -> None:
    assert [s.value for s in S] == [
        "pending",
        "processing",
        "paused",
        "processed",
        "ignored",
        "deliveryFailed",
        "routingFailed",
        "tooOld",
        "targetingFailed",
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PENDING, S.PROCESSING),
        (S.PROCESSING, S.PROCESSED),
        (S.PROCESSING, S.PENDING),
        (S.PROCESSING, S.PROCESSING),
        (S.PROCESSING, S.PAUSED),
        (S.PROCESSING, S.TOO_OLD),
        (S.PAUSED, S.PENDING),
    ],
)
def test_allowed_transitions(old: model.EventStatus, new: model.EventStatus) -> None:
    model.check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PENDING, S.PROCESSED),
        (S.PROCESSED, S.PENDING),
        (S.TOO_OLD, S.PROCESSING),
        (S.PAUSED, S.PROCESSED),
        (S.DELIVERY_FAILED, S.PROCESSED),
    ],
)
def test_forbidden_transitions(old: model.EventStatus, new: model.EventStatus) -> None:
    with pytest.raises(model.InvalidTransition):
        model.check_transition(old, new)


def test_final_statuses_have_no_way_out() -> None:
    assert {
        S.PROCESSED,
        S.IGNORED,
        S.DELIVERY_FAILED,
        S.ROUTING_FAILED,
        S.TOO_OLD,
        S.TARGETING_FAILED,
    } == model.FINAL_STATUSES


def test_sources_of() -> None:
    assert model.sources_of(S.PROCESSED) == (S.PROCESSING,)
    assert set(model.sources_of(S.PENDING)) == {S.PROCESSING, S.PAUSED}
