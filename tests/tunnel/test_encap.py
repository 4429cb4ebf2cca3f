"""The tunnel envelope: round trips, every drop reason in its order, the replay window, incarnations, key rotation,
and that no bytes off the network make open() raise or yield a forgery."""

import hashlib
import random
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tunnel.encap import (
    DROP_REASONS,
    HEADER_LEN,
    PERSONALIZATION,
    TAG_LEN,
    UDP_OVERHEAD_V4,
    UDP_OVERHEAD_V6,
    Kind,
    Opened,
    Opener,
    Sealer,
    overhead,
)
from tunnel.keys import ClusterKeys

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))
KEYS_1 = ClusterKeys(1, {1: KEY_1})
KEYS_2 = ClusterKeys(2, {2: KEY_2})
KEYS_1_AND_2 = ClusterKeys(1, {1: KEY_1, 2: KEY_2})
INCARNATION = 0x0102030405060708

IPV4 = bytes.fromhex("45000020123440004001a4a5c0000201c00002020800192d0001000170696e67")  # ICMP echo "ping"
IPV6 = bytes.fromhex("6000000000083a40" + "20010db8" + "00" * 11 + "01" + "20010db8" + "00" * 11 + "02") + bytes(8)

PREFIX = struct.Struct("!BBHBBBBHHQQ")
FIELDS = ("byte0", "proto", "flags", "format", "hops", "key_id", "reserved8", "sender", "reserved16", "incarnation")


def fields_of(datagram: bytes) -> dict[str, int]:
    return dict(zip((*FIELDS, "counter"), PREFIX.unpack_from(datagram), strict=True))


def forge(datagram: bytes, key: bytes = KEY_1, payload: bytes | None = None, **changes: int) -> bytes:
    """``datagram`` with header fields changed and a tag that is correct for ``key``: a datagram only the header
    checks can refuse, so each test below proves its check does not lean on the tag."""
    fields = fields_of(datagram) | changes
    prefix = PREFIX.pack(*fields.values())
    body = datagram[HEADER_LEN:] if payload is None else payload
    tag = hashlib.blake2b(prefix + bytes(TAG_LEN) + body, key=key, digest_size=TAG_LEN, person=PERSONALIZATION)
    return prefix + tag.digest() + body


def opener(keys: ClusterKeys = KEYS_1, senders=(3,), **kw) -> Opener:
    return Opener(keys, senders, **kw)


def sealer(node_id: int = 3, incarnation: int = INCARNATION, keys: ClusterKeys = KEYS_1) -> Sealer:
    return Sealer(node_id, incarnation, keys)


# --- round trips ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("packet", "proto"), [(IPV4, 4), (IPV6, 41)], ids=["ipv4", "ipv6"])
def test_data_round_trip_carries_the_ip_protocol_number_in_gue_proto(packet, proto):
    datagram = sealer().data(packet, hops=2)
    assert len(datagram) == HEADER_LEN + len(packet)
    assert datagram[:4] == bytes([0x0A, proto, 0, 0])  # variant 0, C=0, Hlen=10; no flags
    assert opener().open(datagram) == Opened(3, INCARNATION, 2, Kind.DATA, packet, new_incarnation=True)


def test_control_round_trip_sets_the_c_bit_and_ctype_0():
    datagram = sealer().control(b"\x07hello")
    assert datagram[:4] == bytes([0x2A, 0, 0, 0])
    assert opener().open(datagram) == Opened(3, INCARNATION, 1, Kind.CONTROL, b"\x07hello", new_incarnation=True)


def test_counter_counts_every_datagram_of_the_sender_whatever_its_kind_or_destination():
    s = sealer()
    counters = [fields_of(d)["counter"] for d in (s.data(IPV4), s.control(b"x"), s.data(IPV6))]
    assert counters == [1, 2, 3] and s.counter == 3


def test_open_takes_bytearray_and_memoryview_and_returns_bytes():
    datagram = sealer().data(IPV4)
    opened = opener().open(memoryview(bytearray(datagram)))
    assert opened is not None and type(opened.payload) is bytes and opened.payload == IPV4


def test_overhead_is_outer_ip_udp_and_our_header():
    assert (UDP_OVERHEAD_V4, UDP_OVERHEAD_V6) == (72, 92)
    assert overhead(False) == 72 and overhead(True) == 92


# --- misuse by our own code raises ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sealer().data(b""), "cannot seal an empty packet"),
        (lambda: sealer().data(b"\x15" + IPV4[1:]), "data must be an IPv4 or IPv6 packet .* got first byte 0x15"),
        (lambda: sealer().data(IPV4, hops=256), "hops 256 must be a whole number from 0 to 255"),
        (lambda: sealer().control(b""), "cannot seal an empty control message"),
        (lambda: Sealer(0, 1, KEYS_1), "node id 0 must be a whole number from 1 to 65535"),
        (lambda: Sealer(65536, 1, KEYS_1), "node id 65536 must be"),
        (lambda: Sealer(1, -1, KEYS_1), "incarnation -1 must be a whole number from 0 to"),
        (lambda: Sealer(1, 1, {1: KEY_1}), "keys must be a ClusterKeys"),
        (lambda: Opener(KEYS_1, [0]), "node id 0 must be"),
        (lambda: Opener(KEYS_1, 3), "senders must be a collection of node ids like"),
        (lambda: Opener(KEYS_1, [3], window=16), "window 16 must be a whole number from 32 to 16384"),
    ],
)
def test_misuse_is_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- each drop reason, in order ------------------------------------------------------------------------------------


def good() -> bytes:
    return sealer().data(IPV4)


DROPS = [
    pytest.param(lambda: good()[: HEADER_LEN - 1], "truncated", id="truncated"),
    pytest.param(lambda: b"", "truncated", id="empty"),
    pytest.param(lambda: forge(good(), byte0=0x4A), "not_gue", id="variant-1"),
    pytest.param(lambda: forge(good(), byte0=0x09), "not_gue", id="hlen-9"),
    pytest.param(lambda: forge(good(), flags=0x0001), "not_gue", id="linux-private-flags"),
    pytest.param(lambda: forge(good(), format=2), "bad_version", id="format-2"),
    pytest.param(lambda: forge(good(), reserved8=1), "bad_header", id="reserved8"),
    pytest.param(lambda: forge(good(), reserved16=0x8000), "bad_header", id="reserved16"),
    pytest.param(lambda: forge(good(), counter=0), "bad_header", id="counter-0"),
    pytest.param(lambda: forge(good(), proto=6), "bad_header", id="proto-tcp"),
    pytest.param(lambda: forge(good(), proto=41), "bad_header", id="proto-6-payload-4"),
    pytest.param(lambda: forge(good(), byte0=0x2A, proto=1), "bad_header", id="ctype-1"),
    pytest.param(lambda: forge(good(), payload=b""), "bad_header", id="empty-payload"),
    pytest.param(lambda: forge(good(), sender=4), "unknown_sender", id="unknown-sender"),
    pytest.param(lambda: forge(good(), key_id=9), "unknown_key", id="unknown-key"),
    pytest.param(lambda: forge(good(), key=KEY_2), "bad_tag", id="other-key-same-id"),
    pytest.param(lambda: good()[:-1] + b"\x00", "bad_tag", id="payload-changed"),
    pytest.param(lambda: good() + b"\x00", "bad_tag", id="payload-extended"),
]


@pytest.mark.parametrize(("make", "reason"), DROPS)
def test_each_bad_datagram_is_dropped_and_counted_under_its_reason(make, reason):
    o = opener()
    assert o.open(make()) is None
    assert o.drops == {reason: 1}
    assert reason in DROP_REASONS


def test_a_datagram_bad_in_two_ways_counts_under_the_first_check():
    o = opener()
    assert o.open(forge(good(), format=2, sender=99, reserved8=1)) is None
    assert o.open(forge(good(), sender=99, key_id=9)) is None
    assert o.drops == {"bad_version": 1, "unknown_sender": 1}


def test_stale_incarnation_and_replay_need_an_authenticated_datagram_first():
    o = opener()
    old, new = sealer(incarnation=7), sealer(incarnation=8)
    assert o.open(new.data(IPV4)).new_incarnation
    assert o.open(old.data(IPV4)) is None
    replayed = new.data(IPV4)
    assert o.open(replayed) is not None and o.open(replayed) is None
    assert o.drops == {"stale_incarnation": 1, "replay": 1}


def test_nothing_unauthenticated_touches_replay_or_incarnation_state():
    o = opener()
    s = sealer(incarnation=5)
    assert o.open(s.data(IPV4)) is not None
    # A forgery (wrong key) claiming a higher incarnation and a far-ahead counter changes nothing.
    assert o.open(forge(s.data(IPV4), key=KEY_2, incarnation=6, counter=10**6)) is None
    assert o.drops == {"bad_tag": 1}
    opened = o.open(s.data(IPV4))  # counter 3 after the forged copy of 2: still inside the window, same incarnation
    assert opened is not None and not opened.new_incarnation
    assert o.open(forge(s.data(IPV4), key=KEY_1)) is not None  # forge() with the real key opens: the helper is sound


# --- the replay window (RFC 4303 §3.4.3) ---------------------------------------------------------------------------


def sealed(count: int, s: Sealer | None = None) -> list[bytes]:
    s = s or sealer()
    return [s.data(IPV4) for _ in range(count)]


def test_in_order_datagrams_all_open_and_only_the_first_is_a_new_incarnation():
    o = opener()
    results = [o.open(d) for d in sealed(3000)]
    assert all(results) and [r.new_incarnation for r in results[:2]] == [True, False]
    assert not o.drops


def test_reordered_within_the_window_all_open_once():
    o = opener()
    datagrams = sealed(1024)
    assert all(o.open(d) for d in reversed(datagrams))  # newest first: the oldest is 1023 behind, inside 1024
    assert not any(o.open(d) for d in datagrams)
    assert o.drops == {"replay": 1024}


def test_older_than_the_window_is_dropped_even_if_never_seen():
    o = opener()
    datagrams = sealed(1025)
    assert o.open(datagrams[1024])  # counter 1025
    assert o.open(datagrams[0]) is None  # counter 1: 1024 behind, just outside
    assert o.open(datagrams[1])  # counter 2: 1023 behind, the window's last slot
    assert o.drops == {"replay": 1}


def test_duplicates_are_dropped_wherever_they_fall():
    o = opener()
    datagrams = sealed(10)
    for i, expect in [(4, True), (2, True), (4, False), (2, False), (9, True), (4, False), (3, True)]:
        assert (o.open(datagrams[i]) is not None) is expect, i
    assert o.drops == {"replay": 3}


def test_a_jump_past_the_whole_window_forgets_everything_before_it():
    o = opener(window=32)
    datagrams = sealed(200)
    assert o.open(datagrams[0]) and o.open(datagrams[199])
    assert o.open(datagrams[1]) is None  # 198 behind
    assert o.open(datagrams[199 - 31]) and o.open(datagrams[199 - 32]) is None


@given(st.lists(st.integers(min_value=1, max_value=150), max_size=300))
@example([100, 68, 69, 100, 1])
def test_window_accepts_exactly_what_a_set_model_of_rfc4303_accepts(order):
    """Model: a counter opens iff never opened before and within 32 of the highest opened so far."""
    datagrams = sealed(150)
    o = opener(window=32)
    seen: set[int] = set()
    for counter in order:
        expect = counter not in seen and counter > max(seen, default=0) - 32
        assert (o.open(datagrams[counter - 1]) is not None) is expect
        if expect:
            seen.add(counter)


# --- incarnations --------------------------------------------------------------------------------------------------


def test_a_higher_incarnation_resets_the_window_and_is_new_once():
    o = opener()
    before = sealer(incarnation=10)
    old = sealed(2000, before)
    assert all(o.open(d) for d in old)
    after = sealer(incarnation=11)  # a restart: its counter starts again at 1
    first, second = o.open(after.data(IPV4)), o.open(after.data(IPV4))
    assert first.new_incarnation and first.incarnation == 11 and not second.new_incarnation
    assert o.open(before.data(IPV4)) is None  # the old incarnation is stale now, even with a fresh counter
    assert o.drops == {"stale_incarnation": 1}


def test_incarnations_are_tracked_per_sender():
    o = opener(senders=(3, 4))
    assert o.open(sealer(3, incarnation=9).data(IPV4)).new_incarnation
    assert o.open(sealer(4, incarnation=1).data(IPV4)).new_incarnation
    assert o.open(sealer(3, incarnation=9).data(IPV4)) is None  # same incarnation, counter 1 again: a replay
    assert o.drops == {"replay": 1}


def test_forget_drops_a_senders_state_and_a_removed_sender_keeps_it():
    o = opener(senders=(3, 4))
    s = sealer(3)
    first = s.data(IPV4)
    assert o.open(first)
    o.senders = [4]
    assert o.open(s.data(IPV4)) is None
    o.senders = [3, 4]
    assert o.open(first) is None  # re-adding a peer did not reopen its replay window
    o.forget(3)
    o.forget(99)  # unknown: nothing to do
    assert o.open(first).new_incarnation  # forgotten: as if never heard from
    assert o.drops == {"unknown_sender": 1, "replay": 1}


# --- keys and rotation ---------------------------------------------------------------------------------------------


def test_a_sender_on_the_next_key_opens_at_a_receiver_holding_both():
    o = opener(KEYS_1_AND_2)
    on_2 = sealer(3, keys=ClusterKeys(2, {2: KEY_2, 1: KEY_1}))
    on_1 = sealer(4, keys=KEYS_1)
    o.senders = [3, 4]
    assert o.open(on_2.data(IPV4)) and o.open(on_1.data(IPV4))
    assert fields_of(on_2.data(IPV4))["key_id"] == 2


def test_rotation_in_three_reloads_never_drops_a_datagram():
    a, b = sealer(3, keys=KEYS_1), opener(KEYS_1)
    step1 = ClusterKeys(1, {1: KEY_1, 2: KEY_2})  # send old, accept both
    step2 = ClusterKeys(2, {2: KEY_2, 1: KEY_1})  # send new, accept both
    for keys in (step1, step2, KEYS_2):
        a.keys = keys
        assert b.open(a.data(IPV4)), keys  # the sender reloads first: the receiver still holds what it uses
        b.keys = keys
        assert b.open(a.data(IPV4)), keys
    assert a.counter == 6 and not b.drops


def test_a_receiver_without_the_senders_key_counts_unknown_key():
    o = opener(KEYS_1)
    assert o.open(sealer(keys=KEYS_2).data(IPV4)) is None
    o.keys = KEYS_1_AND_2
    assert o.open(sealer(keys=KEYS_2).data(IPV4))  # counter 1 again, but the first one never opened
    o.keys = KEYS_2
    assert o.open(sealer(keys=KEYS_1, incarnation=INCARNATION + 1).data(IPV4)) is None
    assert o.drops == {"unknown_key": 2}


# --- nothing off the network raises or forges ----------------------------------------------------------------------


def header_like() -> st.SearchStrategy[bytes]:
    """Bytes that pass the structural checks often, so the tag and state checks are exercised too."""
    return st.builds(
        lambda byte0, proto, rest, tag, payload: (
            PREFIX.pack(byte0, proto, 0, 1, rest[0], rest[1], 0, rest[2], 0, rest[3], rest[4]) + tag + payload
        ),
        st.sampled_from([0x0A, 0x2A]),
        st.sampled_from([0, 4, 41]),
        st.tuples(
            st.integers(0, 255),
            st.sampled_from([1, 2, 9]),
            st.sampled_from([3, 4]),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
        ),
        st.binary(min_size=TAG_LEN, max_size=TAG_LEN),
        st.one_of(st.binary(max_size=64), st.binary(max_size=63).map(lambda b: b"\x45" + b)),
    )


@given(st.one_of(st.binary(max_size=200), header_like()))
def test_arbitrary_bytes_never_raise_and_never_open(data):
    o = opener(KEYS_1_AND_2, senders=(3, 4))
    assert o.open(data) is None
    assert sum(o.drops.values()) == 1 and set(o.drops) <= set(DROP_REASONS)


@given(
    st.sampled_from(["ipv4", "ipv6", "control"]),
    st.binary(max_size=100),
    st.integers(min_value=0),
    st.integers(0, 255),
)
def test_any_single_bit_flip_of_a_sealed_datagram_is_dropped_and_leaves_the_original_intact(kind, extra, bit, hops):
    s = sealer()
    payload = {"ipv4": IPV4, "ipv6": IPV6, "control": b"\x01"}[kind] + extra  # codec payloads are opaque past byte 0
    datagram = s.control(payload) if kind == "control" else s.data(payload, hops)
    bit %= len(datagram) * 8
    damaged = bytearray(datagram)
    damaged[bit >> 3] ^= 1 << (bit & 7)
    o = opener()
    assert o.open(bytes(damaged)) is None
    assert o.open(datagram).payload == payload


def test_every_bit_of_one_datagram_matters():
    datagram, o = sealer().data(IPV4), opener()
    for bit in range(len(datagram) * 8):
        damaged = bytearray(datagram)
        damaged[bit >> 3] ^= 1 << (bit & 7)
        assert o.open(bytes(damaged)) is None, bit
    assert sum(o.drops.values()) == len(datagram) * 8
    assert o.open(datagram)


def test_seeded_random_garbage_is_only_ever_counted():
    rng = random.Random(7)
    o = opener(KEYS_1_AND_2, senders=range(1, 65536))
    for _ in range(20_000):
        assert o.open(rng.randbytes(rng.randrange(0, 120))) is None
    assert sum(o.drops.values()) == 20_000
