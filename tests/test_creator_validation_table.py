"""The creator's validation rules as a table (step × strategy), checked without a chain: the rules that keep
money safe hold for every entry, whatever the table's layout."""

from __future__ import annotations

import pytest

from agents.creator import STRATEGIES, VALIDATION_TABLE, next_action
from decentralml_core.chain.model import ValidationStrategy


def name(step: str, strategy: ValidationStrategy) -> str | None:
    action = next_action(step, strategy)
    return None if action is None else action.__name__


def test_every_strategy_has_a_column() -> None:
    assert set(STRATEGIES) == set(ValidationStrategy)
    assert all(len(row) == len(STRATEGIES) for row in VALIDATION_TABLE.values())


@pytest.mark.parametrize("strategy", list(ValidationStrategy))
def test_a_payment_begun_is_finished_never_turned_into_a_rejection(strategy: ValidationStrategy) -> None:
    assert name("paying", strategy) == "_accept"


@pytest.mark.parametrize("step", sorted(VALIDATION_TABLE))
def test_auto_accept_never_rejects_or_waits_for_a_person(step: str) -> None:
    assert name(step, ValidationStrategy.AUTO_ACCEPT) in ("_accept", None)


@pytest.mark.parametrize("strategy", list(ValidationStrategy))
@pytest.mark.parametrize("step", ["check_payment", "window_closed", "paid", "rejected", "no-such-step"])
def test_steps_left_to_a_person_or_the_worker_do_nothing(step: str, strategy: ValidationStrategy) -> None:
    assert next_action(step, strategy) is None


def test_a_fresh_result_goes_where_its_strategy_says() -> None:
    assert name("seen", ValidationStrategy.MANUAL_ACCEPT) == "_send_to_review"
    assert name("seen", ValidationStrategy.CUSTOM_ACCEPT) == "_ask_validator"
    assert name("undecided", ValidationStrategy.CUSTOM_ACCEPT) == "_ask_validator"
    assert name("review", ValidationStrategy.MANUAL_ACCEPT) == "_wait_for_review"
    assert name("rejecting", ValidationStrategy.CUSTOM_ACCEPT) == "_reject_as_journaled"
