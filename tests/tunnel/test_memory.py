"""MemoryDevice: two ends back to back, bounded, and waking the reader through on_readable."""

import pytest

from tunnel.device import CallbackDevice, Device
from tunnel.memory import MemoryDevice


def test_pair_delivers_both_ways_in_order():
    a, b = MemoryDevice.pair()
    assert a.write(b"\x45one") and a.write(b"\x45two")
    assert b.write(b"\x45back")
    assert b.read_batch() == [b"\x45one", b"\x45two"]
    assert a.read_batch() == [b"\x45back"]
    assert a.read_batch() == [] and b.read_batch() == []
    assert (a.stats.packets_out, a.stats.packets_in, b.stats.packets_out, b.stats.packets_in) == (2, 1, 1, 2)
    assert b.stats.read_batches == 1 and b.stats.bytes_in == len(b"\x45one") + len(b"\x45two")


def test_is_a_device_without_a_file_descriptor():
    a, _ = MemoryDevice.pair()
    assert isinstance(a, Device) and isinstance(a, CallbackDevice)
    assert a.fileno() is None


def test_read_batch_returns_at_most_limit_packets():
    a, b = MemoryDevice.pair()
    assert a.write_batch([bytes([i]) for i in range(5)]) == 5
    assert b.read_batch(2) == [b"\x00", b"\x01"]
    assert b.read_batch(2) == [b"\x02", b"\x03"]
    assert b.read_batch(2) == [b"\x04"]


def test_queue_is_bounded_and_overflow_is_counted_not_raised():
    a, b = MemoryDevice.pair(capacity=3)
    assert a.write_batch([b"p"] * 5) == 3
    assert a.stats.write_drops == 2 and a.stats.packets_out == 3
    assert b.pending() == 3
    assert len(b.read_batch(100)) == 3
    assert a.write(b"p")  # room again once the reader drained


def test_packet_longer_than_mtu_is_refused_and_counted():
    a, b = MemoryDevice.pair(mtu=1280)
    assert not a.write(b"x" * 1281)
    assert a.write(b"x" * 1280)
    assert a.stats.write_errors == 1
    assert b.read_batch() == [b"x" * 1280]


def test_on_readable_fires_when_a_write_makes_an_empty_queue_readable():
    a, b = MemoryDevice.pair()
    calls = []
    b.on_readable = lambda: calls.append(b.pending())
    a.write(b"1")
    assert calls == [1]  # called after the packet is queued, so the callback may read it at once
    a.write(b"2")
    assert calls == [1]  # edge-triggered: the queue was not empty
    b.read_batch()
    a.write(b"3")
    assert calls == [1, 1]
    b.on_readable = None
    a.write(b"4")
    assert calls == [1, 1]


def test_on_readable_of_the_writer_is_not_called():
    a, _ = MemoryDevice.pair()
    calls = []
    a.on_readable = lambda: calls.append("a")
    a.write(b"1")
    assert calls == []


def test_a_callback_may_drain_its_device_from_inside_the_write():
    a, b = MemoryDevice.pair()
    seen = []
    b.on_readable = lambda: seen.extend(b.read_batch())
    a.write(b"1")
    a.write(b"2")
    assert seen == [b"1", b"2"]


def test_write_to_a_closed_peer_is_dropped_and_io_on_a_closed_end_raises():
    a, b = MemoryDevice.pair()
    b.close()
    assert not a.write(b"1")
    assert a.stats.write_drops == 1
    with pytest.raises(ValueError, match="closed"):
        b.read_batch()
    with pytest.raises(ValueError, match="closed"):
        b.write(b"1")


def test_written_bytearray_is_copied():
    a, b = MemoryDevice.pair()
    buffer = bytearray(b"abc")
    a.write(buffer)
    buffer[0] = ord("z")
    assert b.read_batch() == [b"abc"]
