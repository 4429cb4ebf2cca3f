"""The seeded fault injector: what it does to packets crossing a device, and that a seed replays it."""

import pytest

from tunnel.faults import FaultDice, Faults, FaultyDevice
from tunnel.memory import MemoryDevice

PACKETS = [bytes([0x45]) + i.to_bytes(4, "big") * 10 for i in range(2000)]


def carried(faults: Faults, seed: int) -> tuple[list[bytes], FaultyDevice]:
    left, right = MemoryDevice.pair(capacity=10_000)
    faulty = FaultyDevice(left, faults, seed)
    faulty.write_batch(PACKETS)
    out = []
    while batch := right.read_batch(256):
        out += batch
    return out, faulty


def test_no_faults_delivers_everything_in_order():
    out, _ = carried(Faults(), 1)
    assert out == PACKETS


def test_loss_duplication_and_reordering_happen_at_about_their_rates_and_replay_from_the_seed():
    faults = Faults(loss=0.05, duplicate=0.05, reorder=0.05)
    out, faulty = carried(faults, 3)
    assert 50 < faulty.lost < 150 and 50 < faulty.duplicated < 150 and 50 < faulty.reordered < 150
    assert out != PACKETS and set(out) <= set(PACKETS)
    assert out == carried(faults, 3)[0]  # same seed, same run
    assert out != carried(faults, 4)[0]


def test_corruption_flips_exactly_one_bit():
    out, faulty = carried(Faults(corrupt=0.1), 5)
    damaged = [(a, b) for a, b in zip(PACKETS, out) if a != b]
    assert len(damaged) == faulty.corrupted > 0
    for original, copy in damaged:
        assert sum(bin(x ^ y).count("1") for x, y in zip(original, copy)) == 1


def test_each_fault_has_its_own_random_stream():
    """Turning loss up does not change which packets are duplicated."""
    quiet = FaultDice(Faults(duplicate=0.1), seed=9)
    lossy = FaultDice(Faults(duplicate=0.1, loss=0.5), seed=9)
    picks = [quiet.duplicate() for _ in range(500)]
    assert picks == [(lossy.lose(), lossy.duplicate())[1] for _ in range(500)]


def test_reading_side_faults_apply_to_what_the_device_reads():
    left, right = MemoryDevice.pair()
    faulty = FaultyDevice(right, Faults(loss=1.0), 0)
    left.write_batch(PACKETS[:10])
    assert faulty.read_batch(64) == [] and faulty.lost == 10


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match=r"loss=1\.5 must be a probability"):
        Faults(loss=1.5)


def test_delay_holds_packets_until_they_are_due_and_says_when_to_poll():
    now = [100.0]
    left, right = MemoryDevice.pair()
    faulty = FaultyDevice(left, Faults(delay=0.05), 0, clock=lambda: now[0])
    faulty.write_batch(PACKETS[:3])
    assert right.read_batch(64) == [] and faulty.next_wakeup() == pytest.approx(100.05)
    now[0] = 100.06
    faulty.poll()
    assert right.read_batch(64) == PACKETS[:3] and faulty.next_wakeup() is None
    right.write_batch(PACKETS[3:5])  # the reading direction too
    assert faulty.read_batch(64) == []
    now[0] = 100.2
    assert faulty.read_batch(64) == PACKETS[3:5]
