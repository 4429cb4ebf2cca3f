"""The control messages' wire format (appliance/control.py, docs/protocol.md "Control messages"): exact bytes for
golden vectors, round trips, and every way a message can be malformed. A change to a golden vector here is a wire
format change: bump the envelope's format version and say so in the docs."""

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from appliance.claims import ClaimSet, tuple_hash
from appliance.control import (
    MAX_BATCH_BYTES,
    Ack,
    Batch,
    Heartbeat,
    Op,
    decode,
    encode_ack,
    encode_batch,
    encode_heartbeat,
    op_size,
)
from appliance.peers import HEADER_BYTES, ControlTiming, Peer
from tunnel.encap import HEADER_LEN, UDP_OVERHEAD_V6, Sealer
from tunnel.keys import ClusterKeys

IPV6_MIN_MTU = 1280  # RFC 8200 §5: "every link in the Internet [must] have an MTU of 1280 octets or greater"


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


# The 4-tuples of the golden vectors, client side first (RFC 5737 and RFC 3849 documentation addresses).
T4 = (ip("198.51.100.7"), 40000, ip("192.0.2.10"), 443)
T6 = (ip("2001:db8::7"), 40001, ip("2001:db8::10"), 443)
U4 = (ip("203.0.113.5"), 50000, ip("192.0.2.10"), 443)
U6 = (ip("2001:db8::5"), 50001, ip("2001:db8::10"), 443)

# Node 1 opens epoch 1 to node 2 with a snapshot of its two claims...
SNAPSHOT_BATCH = Batch(2, 1, 1, ((Op.SNAPSHOT_BEGIN, None), (Op.CLAIM, T4), (Op.CLAIM, T6), (Op.SNAPSHOT_END, None)))
SNAPSHOT_BATCH_HEX = (
    "01000004"  # type 1 (batch) | flags 0 | count 4
    "00020000"  # receiver 2 | reserved
    "00000001"  # epoch 1
    "00000001"  # seq 1
    "03"  # SNAPSHOT_BEGIN
    "01 04 c6336407 9c40 c000020a 01bb"  # CLAIM | IPv4 | 198.51.100.7 | 40000 | 192.0.2.10 | 443
    "01 06 20010db8000000000000000000000007 9c41"  # CLAIM | IPv6 | 2001:db8::7 | 40001
    "20010db8000000000000000000000010 01bb"  # 2001:db8::10 | 443
    "04"  # SNAPSHOT_END
)
# ...then releases the IPv4 one...
RELEASE_BATCH = Batch(2, 1, 2, ((Op.RELEASE, T4),))
RELEASE_BATCH_HEX = (
    "01000001"  # type 1 (batch) | flags 0 | count 1
    "00020000"  # receiver 2 | reserved
    "00000001"  # epoch 1
    "00000002"  # seq 2
    "02 04 c6336407 9c40 c000020a 01bb"  # RELEASE | IPv4 | 198.51.100.7 | 40000 | 192.0.2.10 | 443
)
# ...node 2 acknowledges both batches at once...
ACK = Ack(1, 1, 2)
ACK_HEX = (
    "02000000"  # type 2 (ack) | flags 0 | count 0
    "00010000"  # receiver 1 | reserved
    "00000001"  # epoch 1
    "00000002"  # seq 2: every batch of epoch 1 up to 2 applied
)
# ...and its heartbeat to node 1 says what it owns (U4 and U6) and what it holds of node 1's claims (T6 alone).
OWN_DIGEST = 0xE4D635A298E06BD5  # tuple_hash(U4) ^ tuple_hash(U6)
HELD_DIGEST = 0xEEFBF820DA54CD7A  # tuple_hash(T6)
HEARTBEAT = Heartbeat(1, ((2, 2, OWN_DIGEST), (1, 1, HELD_DIGEST)))
HEARTBEAT_HEX = (
    "03000002"  # type 3 (heartbeat) | flags 0 | count 2
    "00010000"  # receiver 1 | reserved
    "0002 0000 00000002 e4d635a298e06bd5"  # owner 2 | reserved | 2 claims | digest
    "0001 0000 00000001 eefbf820da54cd7a"  # owner 1 | reserved | 1 claim | digest
)
GOLDEN = [
    (SNAPSHOT_BATCH, SNAPSHOT_BATCH_HEX),
    (RELEASE_BATCH, RELEASE_BATCH_HEX),
    (ACK, ACK_HEX),
    (HEARTBEAT, HEARTBEAT_HEX),
]


def encode(message) -> bytes:
    if type(message) is Batch:
        return encode_batch(message)
    if type(message) is Ack:
        return encode_ack(message)
    return encode_heartbeat(message)


# -- golden vectors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=["snapshot", "release", "ack", "heartbeat"])
def test_golden_vectors_encode_and_decode_exactly(message, hex_):
    assert encode(message).hex() == hex_.replace(" ", "")
    assert decode(bytes.fromhex(hex_)) == message


def test_golden_heartbeat_digests_are_claim_set_digests_of_the_stated_tuples():
    """Pins the digest function: the XOR, over the set, of BLAKE2b with an 8-byte digest (not BLAKE2b-512 cut
    short: the digest length is a BLAKE2 parameter) of each encoded 4-tuple, read big-endian."""
    assert ClaimSet([U4, U6]).summary() == (2, OWN_DIGEST)
    assert ClaimSet([T6]).summary() == (1, HELD_DIGEST)
    assert tuple_hash(U4) ^ tuple_hash(U6) == OWN_DIGEST
    assert tuple_hash(T4) == 0x2EFB8CA847D2198F
    assert ClaimSet([T4, T6]).digest == 0x2EFB8CA847D2198F ^ HELD_DIGEST


def test_golden_batch_lengths_follow_from_op_sizes():
    assert len(bytes.fromhex(SNAPSHOT_BATCH_HEX)) == HEADER_BYTES + sum(map(op_size, SNAPSHOT_BATCH.ops)) == 70
    assert len(bytes.fromhex(RELEASE_BATCH_HEX)) == HEADER_BYTES + 14
    assert len(bytes.fromhex(ACK_HEX)) == 16
    assert len(bytes.fromhex(HEARTBEAT_HEX)) == 8 + 2 * 16


# -- round trips --------------------------------------------------------------------------------------------------

ROUND_TRIPS = [
    Batch(1, 0, 1, ((Op.CLAIM, T4),)),
    Batch(65535, 2**32 - 1, 2**32 - 1, ((Op.RELEASE, T6),)),
    Batch(3, 7, 9, ((Op.SNAPSHOT_BEGIN, None),)),
    Batch(3, 7, 10, ((Op.SNAPSHOT_END, None),)),
    Batch(3, 7, 11, ((Op.CLAIM, T6), (Op.RELEASE, T4), (Op.CLAIM, U4), (Op.RELEASE, U6))),
    Batch(3, 7, 12, ()),  # decode accepts an empty batch; Peer never builds one
    Ack(2, 5, 0),  # "I have no state for epoch 5"
    Ack(2, 2**32 - 1, 2**32 - 1),
    Heartbeat(4, ()),
    Heartbeat(4, ((65535, 2**32 - 1, 2**64 - 1),)),
]


@pytest.mark.parametrize("message", ROUND_TRIPS, ids=repr)
def test_round_trip(message):
    assert decode(encode(message)) == message


def test_decoded_ops_are_op_members_and_bytes():
    (begin, claim4, claim6, end) = decode(bytes.fromhex(SNAPSHOT_BATCH_HEX)).ops
    assert [type(op) for op, _ in (begin, claim4, claim6, end)] == [Op] * 4
    assert type(claim6[1][0]) is bytes and len(claim6[1][0]) == 16


# -- malformed ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=["snapshot", "release", "ack", "heartbeat"])
def test_every_truncation_is_refused(message, hex_):
    data = bytes.fromhex(hex_)
    for length in range(len(data)):
        assert decode(data[:length]) is None, length


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=["snapshot", "release", "ack", "heartbeat"])
def test_trailing_bytes_are_refused(message, hex_):
    for extra in (b"\x00", b"\x03", bytes(16)):
        assert decode(bytes.fromhex(hex_) + extra) is None


def patched(hex_: str, offset: int, value: bytes) -> bytes:
    data = bytearray.fromhex(hex_)
    data[offset : offset + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize(("message", "hex_"), GOLDEN, ids=["snapshot", "release", "ack", "heartbeat"])
@pytest.mark.parametrize(
    ("offset", "value"),
    [(1, b"\x01"), (1, b"\x80"), (6, b"\x00\x01"), (6, b"\x80\x00"), (4, b"\x00\x00")],
    ids=["flags", "flags-high", "reserved", "reserved-high", "receiver-0"],
)
def test_nonzero_flags_or_reserved_and_receiver_zero_are_refused(message, hex_, offset, value):
    assert decode(patched(hex_, offset, value)) is None


@pytest.mark.parametrize("kind", [0, 4, 5, 0x81, 0xFF])
def test_unknown_message_type_is_refused(kind):
    for hex_ in (SNAPSHOT_BATCH_HEX, ACK_HEX, HEARTBEAT_HEX):
        assert decode(patched(hex_, 0, bytes((kind,)))) is None


@pytest.mark.parametrize("code", [0, 5, 0x81, 0xFF])
def test_unknown_op_is_refused(code):
    assert decode(patched(SNAPSHOT_BATCH_HEX, 16, bytes((code,)))) is None  # in place of SNAPSHOT_BEGIN
    assert decode(patched(RELEASE_BATCH_HEX, 16, bytes((code,)))) is None  # in place of RELEASE


@pytest.mark.parametrize("family", [0, 1, 5, 41, 0xFF])
def test_unknown_address_family_is_refused(family):
    assert decode(patched(RELEASE_BATCH_HEX, 17, bytes((family,)))) is None
    assert decode(patched(SNAPSHOT_BATCH_HEX, 18, bytes((family,)))) is None  # first CLAIM's family


def test_family_that_disagrees_with_the_length_is_refused():
    # An IPv4 family byte in front of an IPv6 tuple leaves 24 bytes over; an IPv6 one in front of an IPv4 tuple
    # runs past the end.
    assert decode(patched(SNAPSHOT_BATCH_HEX, 32, b"\x04")) is None
    assert decode(patched(RELEASE_BATCH_HEX, 17, b"\x06")) is None


@pytest.mark.parametrize("count", [0, 3, 5, 0xFFFF])
def test_batch_count_mismatch_is_refused(count):
    assert decode(patched(SNAPSHOT_BATCH_HEX, 2, count.to_bytes(2, "big"))) is None


@pytest.mark.parametrize("count", [0, 1, 3, 0xFFFF])
def test_heartbeat_count_mismatch_is_refused(count):
    assert decode(patched(HEARTBEAT_HEX, 2, count.to_bytes(2, "big"))) is None


def test_heartbeat_digest_with_owner_zero_or_reserved_set_is_refused():
    assert decode(patched(HEARTBEAT_HEX, 8, b"\x00\x00")) is None  # first digest's owner
    assert decode(patched(HEARTBEAT_HEX, 10, b"\x00\x01")) is None  # first digest's reserved
    assert decode(patched(HEARTBEAT_HEX, 26, b"\x80\x00")) is None  # second digest's reserved


def test_batch_with_seq_zero_is_refused():
    assert decode(patched(SNAPSHOT_BATCH_HEX, 12, bytes(4))) is None


@pytest.mark.parametrize("count", [1, 2, 0xFFFF])
def test_ack_with_nonzero_count_is_refused(count):
    assert decode(patched(ACK_HEX, 2, count.to_bytes(2, "big"))) is None


# -- properties ---------------------------------------------------------------------------------------------------

ports = st.integers(0, 65535)
four_tuples = st.one_of(
    st.tuples(st.binary(min_size=4, max_size=4), ports, st.binary(min_size=4, max_size=4), ports),
    st.tuples(st.binary(min_size=16, max_size=16), ports, st.binary(min_size=16, max_size=16), ports),
)
entries = st.one_of(
    st.tuples(st.sampled_from([Op.CLAIM, Op.RELEASE]), four_tuples),
    st.tuples(st.sampled_from([Op.SNAPSHOT_BEGIN, Op.SNAPSHOT_END]), st.none()),
)
receivers = st.integers(1, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
messages = st.one_of(
    st.builds(Batch, receivers, u32, st.integers(1, 2**32 - 1), st.lists(entries, max_size=40).map(tuple)),
    st.builds(Ack, receivers, u32, u32),
    st.builds(
        Heartbeat,
        receivers,
        st.lists(st.tuples(receivers, u32, st.integers(0, 2**64 - 1)), max_size=20).map(tuple),
    ),
)


@given(messages)
def test_decode_inverts_encode(message):
    assert decode(encode(message)) == message


@given(st.binary(max_size=300))
@example(b"\x01\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x01\x06")  # a family, then nothing
@example(b"\x03\x00\x00\x01\x00\x01\x00\x00")  # a heartbeat promising a digest it lacks
def test_decode_never_raises_on_arbitrary_bytes(data):
    message = decode(data)
    assert message is None or encode(message) == data  # and what it accepts is canonical


@given(messages, st.data())
def test_decode_never_raises_on_damaged_messages(message, data):
    """Arbitrary bytes rarely get past the header; damage to a real message reaches every field."""
    raw = bytearray(encode(message))
    action = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if action == "flip":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=40))
    decoded = decode(bytes(raw))
    assert decoded is None or encode(decoded) == bytes(raw)


# -- sizes --------------------------------------------------------------------------------------------------------


def test_a_full_batch_fits_ipv6_minimum_mtu_after_the_envelope():
    assert MAX_BATCH_BYTES + UDP_OVERHEAD_V6 <= IPV6_MIN_MTU
    sealed = Sealer(1, 1, ClusterKeys(send_id=1, keys={1: bytes(32)})).control(bytes(MAX_BATCH_BYTES))
    assert len(sealed) == MAX_BATCH_BYTES + HEADER_LEN
    assert 40 + 8 + len(sealed) <= IPV6_MIN_MTU  # outer IPv6 and UDP headers


def test_op_size_is_the_encoded_size():
    for entry in [(Op.SNAPSHOT_BEGIN, None), (Op.SNAPSHOT_END, None), (Op.CLAIM, T4), (Op.RELEASE, T6)]:
        assert len(encode_batch(Batch(1, 1, 1, (entry,)))) == HEADER_BYTES + op_size(entry)


def ipv6_tuple(i: int):
    return (ipaddress.IPv6Address(0x20010DB8 << 96 | i).packed, 1024 + i, ip("2001:db8::10"), 443)


def test_take_batches_fills_but_never_overfills_a_datagram_with_ipv6_claims():
    peer = Peer(2, ("10.255.0.2", 6080), ControlTiming(window=1000), now=0.0)
    keys = [ipv6_tuple(i) for i in range(1000)]
    peer.open_epoch(keys)
    batches = peer.take_batches(now=0.0)
    sizes = [len(encode_batch(batch)) for batch in batches]
    assert max(sizes) <= MAX_BATCH_BYTES
    assert min(sizes[:-1]) > MAX_BATCH_BYTES - op_size((Op.CLAIM, keys[0]))  # each batch as full as it can be
    ops = [entry for batch in batches for entry in batch.ops]
    assert ops == [(Op.SNAPSHOT_BEGIN, None), *((Op.CLAIM, key) for key in keys), (Op.SNAPSHOT_END, None)]
    assert [batch.seq for batch in batches] == list(range(1, len(batches) + 1))


changes = st.tuples(st.sampled_from([Op.CLAIM, Op.RELEASE]), four_tuples)


@given(st.lists(four_tuples, max_size=100), st.lists(changes, max_size=200))
def test_take_batches_never_exceeds_max_batch_bytes_and_keeps_order(snapshot, queued):
    peer = Peer(2, ("10.255.0.2", 6080), ControlTiming(window=1000), now=0.0)
    peer.open_epoch(snapshot)
    for op, key in queued:
        peer.queue(op, key)
    batches = peer.take_batches(now=0.0)
    assert all(batch.ops and len(encode_batch(batch)) <= MAX_BATCH_BYTES for batch in batches)
    sent = [entry for batch in batches for entry in batch.ops]
    assert sent == [(Op.SNAPSHOT_BEGIN, None), *((Op.CLAIM, key) for key in snapshot), (Op.SNAPSHOT_END, None), *queued]
