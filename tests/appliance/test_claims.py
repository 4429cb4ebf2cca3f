"""The claims a node holds for its peers (appliance/claims.py): one owner per 4-tuple, a bound per owner that
refuses without side effects, snapshot replacement, and digests that depend on the set alone."""

import hashlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.claims import ClaimSet, ClaimsTable, encode_tuple, tuple_hash


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def key(i: int) -> tuple[bytes, int, bytes, int]:
    """A distinct IPv4 4-tuple per ``i``: client 198.51.100.x port 40000 + i, to 192.0.2.10 port 443."""
    return (ip(f"198.51.100.{i % 250 + 1}"), 40000 + i, ip("192.0.2.10"), 443)


A, B, C, D = key(1), key(2), key(3), key(4)


def snapshot(table: ClaimsTable, owners=(1, 2, 3)) -> tuple:
    return len(table), table.owners(), [table.summary(owner) for owner in owners]


# -- claim, release, owner ----------------------------------------------------------------------------------------


def test_claim_records_the_owner_and_release_forgets_it():
    table = ClaimsTable()
    assert table.claim(1, A)
    assert table.owner(A) == 1 and table.owner(B) is None
    assert len(table) == 1 and table.owners() == [1]
    table.release(1, A)
    assert table.owner(A) is None and len(table) == 0
    assert table.owners() == [] and table.summary(1) == (0, 0)


def test_claiming_twice_is_one_claim():
    table = ClaimsTable()
    assert table.claim(1, A) and table.claim(1, A)
    assert table.summary(1) == (1, tuple_hash(A))


def test_release_by_another_owner_or_of_an_unknown_tuple_changes_nothing():
    table = ClaimsTable()
    table.claim(1, A)
    before = snapshot(table)
    table.release(2, A)
    table.release(1, B)
    table.release(3, C)
    assert snapshot(table) == before and table.owner(A) == 1


# -- the bound ----------------------------------------------------------------------------------------------------


def test_the_bound_is_per_owner_and_a_refused_claim_changes_nothing():
    table = ClaimsTable(max_per_owner=2)
    assert table.claim(1, A) and table.claim(1, B)
    before = snapshot(table)
    assert not table.claim(1, C)
    assert snapshot(table) == before and table.owner(C) is None
    assert table.claim(1, A)  # one it already holds is no new claim
    assert table.claim(2, C) and table.claim(2, D)  # another owner has its own share


def test_a_full_owner_cannot_take_a_tuple_from_another_owner():
    table = ClaimsTable(max_per_owner=1)
    table.claim(1, A)
    table.claim(2, B)
    before = snapshot(table)
    assert not table.claim(1, B)
    assert snapshot(table) == before and table.owner(B) == 2


def test_the_bound_must_be_positive():
    with pytest.raises(ValueError, match="max_per_owner=0 must be at least 1"):
        ClaimsTable(0)


# -- moves --------------------------------------------------------------------------------------------------------


def test_a_tuple_moves_to_its_newest_owner_and_the_old_owners_late_release_is_ignored():
    table = ClaimsTable()
    table.claim(1, A)
    table.claim(1, B)
    assert table.claim(2, A)
    assert table.owner(A) == 2
    assert table.summary(1) == (1, tuple_hash(B)) and table.summary(2) == (1, tuple_hash(A))
    table.release(1, A)  # the old owner's release, overtaken by the new claim
    assert table.owner(A) == 2 and len(table) == 2


def test_an_owner_whose_only_tuple_moved_is_no_longer_listed():
    table = ClaimsTable()
    table.claim(1, A)
    table.claim(2, A)
    assert table.owners() == [2] and table.summary(1) == (0, 0)
    assert table.drop_owner(1) == set()
    assert table.owner(A) == 2


# -- replace (a snapshot) -----------------------------------------------------------------------------------------


def test_replace_makes_the_owners_claims_exactly_the_snapshot():
    table = ClaimsTable()
    table.claim(1, A)
    table.claim(1, B)
    table.claim(2, D)
    assert table.replace(1, [B, C, C])
    assert table.owner(A) is None and table.owner(B) == 1 and table.owner(C) == 1
    assert table.summary(1) == ClaimSet([B, C]).summary()
    assert table.owner(D) == 2 and table.summary(2) == (1, tuple_hash(D))  # other owners untouched


def test_replace_with_nothing_forgets_the_owner():
    table = ClaimsTable()
    table.claim(1, A)
    assert table.replace(1, [])
    assert len(table) == 0 and table.owners() == []


def test_replace_takes_tuples_from_other_owners():
    table = ClaimsTable()
    table.claim(2, A)
    assert table.replace(1, [A])
    assert table.owner(A) == 1 and table.summary(2) == (0, 0)


def test_replace_beyond_the_bound_is_refused_and_changes_nothing():
    table = ClaimsTable(max_per_owner=2)
    table.claim(1, A)
    table.claim(2, B)
    before = snapshot(table)
    assert not table.replace(1, [B, C, D])
    assert snapshot(table) == before and table.owner(A) == 1 and table.owner(B) == 2
    assert table.replace(1, [C, C, D])  # duplicates count once: two tuples fit
    assert table.summary(1) == ClaimSet([C, D]).summary()


# -- drop_owner ---------------------------------------------------------------------------------------------------


def test_drop_owner_forgets_and_returns_its_claims():
    table = ClaimsTable()
    table.claim(1, A)
    table.claim(1, B)
    table.claim(2, C)
    assert table.drop_owner(1) == {A, B}
    assert table.owner(A) is None and table.owner(B) is None and table.owner(C) == 2
    assert table.owners() == [2] and len(table) == 1
    assert table.drop_owner(1) == set() and table.drop_owner(9) == set()


def test_drop_owner_does_not_return_tuples_that_moved_away():
    table = ClaimsTable()
    table.claim(1, A)
    table.claim(1, B)
    table.claim(2, A)
    assert table.drop_owner(1) == {B}
    assert table.owner(A) == 2


# -- digests ------------------------------------------------------------------------------------------------------

ports = st.integers(0, 65535)
four_tuples = st.one_of(
    st.tuples(st.binary(min_size=4, max_size=4), ports, st.binary(min_size=4, max_size=4), ports),
    st.tuples(st.binary(min_size=16, max_size=16), ports, st.binary(min_size=16, max_size=16), ports),
)


@given(st.lists(four_tuples, max_size=30), st.randoms(use_true_random=False))
def test_summary_depends_on_the_set_not_on_insertion_order(keys, rng):
    shuffled = list(keys)
    rng.shuffle(shuffled)
    one, other = ClaimsTable(), ClaimsTable()
    for k in keys:
        one.claim(1, k)
    for k in shuffled + shuffled[: len(shuffled) // 2]:  # and repeats are no-ops
        other.claim(1, k)
    assert one.summary(1) == other.summary(1) == ClaimSet(keys).summary()
    assert one.summary(1) == (len(set(keys)), _xor(tuple_hash(k) for k in set(keys)))


@given(st.sets(four_tuples, max_size=30), st.sets(four_tuples, max_size=30))
def test_equal_sets_reached_by_different_histories_have_equal_digests(start, target):
    """Claims and releases in any order end at the digest of the final set alone, as a snapshot would."""
    table = ClaimsTable()
    for k in start:
        table.claim(1, k)
    for k in start - target:
        table.release(1, k)
    for k in target:
        table.claim(1, k)
    assert table.summary(1) == ClaimSet(target).summary()
    fresh = ClaimsTable()
    fresh.replace(1, target)
    assert fresh.summary(1) == table.summary(1)


@given(st.sets(four_tuples, min_size=1, max_size=30))
def test_removing_everything_brings_the_digest_back_to_zero(keys):
    claims = ClaimSet(keys)
    for k in keys:
        claims.discard(k)
    claims.discard(next(iter(keys)))  # absent: nothing changes
    assert claims.summary() == (0, 0)


def _xor(values) -> int:
    out = 0
    for value in values:
        out ^= value
    return out


# -- the 4-tuple's wire form --------------------------------------------------------------------------------------


def test_encode_tuple_ipv4_layout():
    encoded = encode_tuple((ip("198.51.100.7"), 40000, ip("192.0.2.10"), 443))
    # family 4 | client address | client port | service address | service port
    assert encoded == bytes.fromhex("04 c6336407 9c40 c000020a 01bb")
    assert len(encoded) == 1 + 4 + 2 + 4 + 2


def test_encode_tuple_ipv6_layout():
    encoded = encode_tuple((ip("2001:db8::7"), 40001, ip("2001:db8::10"), 443))
    assert encoded == bytes.fromhex("06 20010db8000000000000000000000007 9c41 20010db8000000000000000000000010 01bb")
    assert len(encoded) == 1 + 16 + 2 + 16 + 2


def test_tuple_hash_is_unkeyed_blake2b_with_an_8_byte_digest_read_big_endian():
    """The digest length enters BLAKE2b's initial state (RFC 7693 §3.3), so this is not BLAKE2b-512 cut short."""
    for k in (A, (ip("2001:db8::7"), 40001, ip("2001:db8::10"), 443)):
        digest = hashlib.blake2b(encode_tuple(k), digest_size=8).digest()
        assert tuple_hash(k) == int.from_bytes(digest, "big")
        assert digest != hashlib.blake2b(encode_tuple(k)).digest()[:8]
