"""The in-flight book's rules, without a node: nonces never handed out twice, recovery plans in order."""

import asyncio

import pytest

from decentralml_core.chain.inflight import InFlight, Signed

A, B = "alice", "bob"


def signed(account: str, nonce: int, key: str | None = None) -> Signed:
    return Signed(account, nonce, "System.remark", b"raw", [f"0x{account}{nonce}"],
                  asyncio.get_running_loop().create_future(), key=key)


async def test_a_nonce_held_in_flight_is_never_handed_out_again_even_when_the_node_forgot_it():
    book = InFlight()
    book.set_next(A, 17)
    for nonce in (book.take(A), book.take(A)):
        book.add(signed(A, nonce), now=0)
    book.set_next(A, 17)  # a restarted node lost both: it says 17 is next
    assert book.take(A) == 19
    book.set_next(B, 3)  # another account is not affected
    assert book.take(B) == 3


async def test_a_nonce_given_back_is_reused_only_when_nothing_holds_it():
    book = InFlight()
    book.set_next(A, 5)
    assert book.take(A) == 5
    book.give_back(A, 5)
    assert book.take(A) == 5
    book.add(signed(A, 5), now=0)
    book.give_back(A, 5)  # held: a refusal of another extrinsic must not free it
    assert book.take(A) == 6


async def test_recovery_plans_every_unused_nonce_in_order_and_names_the_gaps():
    book = InFlight()
    held = {n: signed(A, n) for n in (16, 18, 19)}
    for s in held.values():
        book.add(s, now=0)
    plan = book.plan(A, 17)  # 16 not included although the chain used 17: another extrinsic took its nonce
    assert plan.replaced == [held[16]]
    assert plan.resend == [(17, None), (18, held[18]), (19, held[19])]  # 17: a gap to fill, else 18 and 19 wait
    assert book.plan(B, 0).resend == []


async def test_an_included_extrinsic_settles_by_any_of_its_signed_forms_and_frees_nothing_else():
    book = InFlight()
    first, second = signed(A, 1), signed(A, 2)
    book.add(first, now=0)
    book.add(second, now=0)
    book.alias(first, b"resigned", "0xnew")
    assert book.find("0xnew") is first and book.find(first.hashes[0]) is first
    book.remove(first, now=5)
    assert book.find("0xnew") is None and book.find(first.hashes[0]) is None
    assert book.of(A) == [second] and len(book) == 1
    with pytest.raises(ValueError, match="held by"):
        book.add(signed(A, 2), now=0)


async def test_a_stalled_account_is_one_whose_extrinsics_neither_left_nor_landed_for_a_while():
    book = InFlight()
    book.add(signed(A, 1), now=0)
    book.add(signed(B, 1), now=8)
    assert book.stalled(now=10, after=10) == [A]
    book.touch(A, now=10)  # a recovery ran
    assert book.stalled(now=12, after=10) == []
    book.remove(book.of(B)[0], now=12)
    assert book.stalled(now=100, after=10) == [A]


async def test_a_retried_step_finds_the_extrinsic_still_doing_it():
    book = InFlight()
    held = signed(A, 4, key="verdict:12")
    book.add(held, now=0)
    assert book.keyed(A, "verdict:12") is held
    assert book.keyed(A, "verdict:13") is None and book.keyed(B, "verdict:12") is None
