"""Urgent data (RFC 9293 §3.8.5, MUST-30..33, MUST-62): delivered inline, its end reported at once."""

import dataclasses

from stack.tcp.events import DataReceived, UrgentData
from stack.wire import ACK, PSH, URG

from .harness import deliver, established, events, expect, local_seq, ours, remote_seq, seg


def urgent(segment, pointer):
    return dataclasses.replace(segment, urgent=pointer)


def test_must_62_urgent_pointer_points_past_the_last_urgent_byte():
    conn = established()
    conn.send(b"!!", urgent=True)
    expect(conn, urgent(ours(local_seq(1), remote_seq(1), ACK | PSH | URG, payload=b"!!"), 2))


def test_must_31_segments_before_the_urgent_end_all_carry_the_pointer():
    conn = established()
    conn.send(b"a" * 3000, urgent=True)
    first, second = conn.segments_to_send(0.0)[:2]
    assert first.flags & URG and first.urgent == 3000
    assert second.flags & URG and second.urgent == 3000 - 1460
    deliver(conn, seg(remote_seq(1), local_seq(3001)))  # all urgent data acknowledged
    conn.send(b"later")
    (after,) = conn.segments_to_send(0.0)
    assert not after.flags & URG and after.urgent == 0


def test_must_32_33_urgent_mark_is_reported_ahead_of_the_data_and_counted_down_as_it_is_read():
    conn = established()
    conn.pause_reading()
    deliver(conn, urgent(seg(remote_seq(1), local_seq(1), ACK | URG, payload=b"URGENT+normal"), 6))
    assert conn.next_event() == UrgentData(6)  # arrives even though reading is paused
    assert conn.urgent_remaining() == 6
    conn.resume_reading()
    assert events(conn) == [DataReceived(b"URGENT+normal")]  # inline, in order
    assert conn.urgent_remaining() == 0


def test_urgent_pointer_that_does_not_advance_is_not_reported_again():
    conn = established()
    deliver(conn, urgent(seg(remote_seq(1), local_seq(1), ACK | URG, payload=b"ab"), 2))
    deliver(conn, urgent(seg(remote_seq(3), local_seq(1), ACK | URG, payload=b"cd"), 0))
    assert [e for e in events(conn) if isinstance(e, UrgentData)] == [UrgentData(2)]
