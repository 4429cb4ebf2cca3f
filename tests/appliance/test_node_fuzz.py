"""The whole node at its packet boundary (issue 8's invariant: any bytes in, no exception out, memory bounded).

Hypothesis feeds one anycast node everything it can receive: arbitrary bytes and mangled TCP segments from the
Internet side, arbitrary datagrams on the tunnel, and authentic tunnel datagrams (sealed with the cluster key by a
real peer) whose insides are garbage, mangled segments or mangled control messages: the last ones get past the
authentication to the classifier, the TCP input and the claims protocol. Time moves between inputs and every
timer fires. Nothing may raise, and what the node keeps stays within its bounds.
"""

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from appliance.control import encode_ack, encode_batch, encode_heartbeat
from stack.tcp.state import State
from stack.wire.tcp import build_tcp_packet
from tests.appliance.test_control import messages
from tests.fuzz.node_under_fuzz import KEYS, SERVICE, make_node
from tests.wire.strategies import tcp_segments
from tests.wire.test_malformed_input import reseal
from tunnel.encap import Sealer

CLIENTS = [bytes([198, 51, 100, i]) for i in (1, 2, 3)]
BACKLOG = 8


def encode(message) -> bytes:
    kind = type(message).__name__
    return {"Batch": encode_batch, "Ack": encode_ack, "Heartbeat": encode_heartbeat}[kind](message)


def mangle(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    del out[len(out) - min(cut, len(out)) :]
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3)
cuts = st.integers(0, 40) | st.just(0)


@st.composite
def segments_to_the_service(draw) -> bytes:
    seg = draw(tcp_segments(max_payload=60))
    seg = dataclasses.replace(seg, dst_port=draw(st.sampled_from([80, 80, 80, seg.dst_port])))  # mostly the listener
    packet = bytearray(build_tcp_packet(seg, draw(st.sampled_from(CLIENTS)), SERVICE))
    packet = bytearray(mangle(bytes(packet), draw(edits), draw(cuts)))
    if draw(st.booleans()):
        reseal(packet)
    return bytes(packet)


@st.composite
def inputs(draw):
    sealer = Sealer(draw(st.sampled_from([2, 3])), incarnation=1, keys=KEYS)
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return "packet", draw(st.binary(max_size=120))
    if kind == 1:
        return "packet", draw(segments_to_the_service())
    if kind == 2:
        return "datagram", draw(st.binary(max_size=120))
    if kind == 3:  # authentic, carrying a mangled segment: past the tunnel's checks into the forwarded path
        packet = draw(segments_to_the_service()) or b"\x45"
        if packet[0] >> 4 not in (4, 6):  # the sealer carries IP packets only; the rest may be anything
            packet = bytes([0x40 | packet[0] & 0x0F]) + packet[1:]
        return "datagram", sealer.data(packet, hops=draw(st.integers(1, 2)))
    if kind == 4:  # authentic control with garbage inside
        return "datagram", sealer.control(draw(st.binary(min_size=1, max_size=120)))
    if kind == 5:  # authentic control, well formed or mangled
        return "datagram", sealer.control(mangle(encode(draw(messages)), draw(edits), draw(cuts)) or b"\x00")
    return "time", draw(st.sampled_from([0.001, 0.2, 1.0, 5.0]))


@given(st.lists(inputs(), max_size=40))
def test_any_input_at_the_boundary_of_a_node_is_dropped_or_handled_never_raised(items):
    node = make_node(BACKLOG)
    now = 0.0
    for kind, value in items:
        if kind == "time":
            now += value
            deadline = node.get_timer()
            if deadline is not None and deadline <= now:
                node.handle_timer(now)
        elif kind == "packet":
            node.receive_packet(value, now)
        else:
            node.receive_datagram(value, now)
        node.packets_to_send(now)
        node.datagrams_to_send(now)
        while node.next_event() is not None:
            pass
    # Bounded: half-open connections by the backlog (the rest were refused), claims by max_claims per owner.
    embryonic = [c for c in node.host.connections.values() if c.state is State.SYN_RECEIVED]
    assert len(embryonic) <= BACKLOG
    assert len(node.host.connections) <= len(items)
