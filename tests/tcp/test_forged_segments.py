"""RFC 5961's threat model, as a campaign: a blind attacker who knows a connection's 4-tuple but not its sequence
numbers sprays forged RSTs, SYNs and data segments at both ends of a live transfer. The connection must survive
with every byte exact, and the challenge ACKs the forgeries provoke must stay within their rate limit (RFC 5961
§7), so the attacker cannot use us as an amplifier."""

import random

import pytest

from stack.host import Host
from stack.tcp.config import TcpConfig
from stack.tcp.events import CloseReason
from stack.testing import BulkEndpoint, LinkFaults, Network
from stack.wire.tcp import ACK, PSH, RST, SYN, TcpOptions, TcpSegment, build_tcp_packet

SIZE = 2_000_000
RATE = 2000  # forged segments per simulated second, at each end
CHALLENGES_PER_SECOND = 50


def forged(rng: random.Random, kind: str, sport: int, dport: int) -> TcpSegment:
    flags = {"rst": RST, "rst-ack": RST | ACK, "syn": SYN, "data": ACK | PSH}[kind]
    payload = rng.randbytes(rng.randint(1, 100)) if kind == "data" else b""
    return TcpSegment(
        src_port=sport,
        dst_port=dport,
        seq=rng.getrandbits(32),
        ack=rng.getrandbits(32) if flags & ACK else 0,
        flags=flags,
        window=65535,
        payload=payload,
        options=TcpOptions(),
    )


@pytest.mark.parametrize("kind", ["rst", "rst-ack", "syn", "data"])
def test_a_blind_attack_on_both_ends_of_a_transfer_changes_nothing(kind):
    rng = random.Random(f"forge:{kind}")
    config = TcpConfig(challenge_acks_per_second=CHALLENGES_PER_SECOND)
    net = Network(seed=f"forge:{kind}")
    a_data, b_data = rng.randbytes(SIZE), rng.randbytes(SIZE)
    a, b = BulkEndpoint(a_data), BulkEndpoint(b_data)
    hosts = {
        "a": Host(["10.0.0.1"], secret=b"a" * 16, config=config),
        "b": Host(["10.0.0.2"], secret=b"b" * 16, config=config),
    }
    net.add_host("a", hosts["a"], app=lambda h, c, e: a.on_event(c, e, net.now))
    net.add_host("b", hosts["b"], app=lambda h, c, e: b.on_event(c, e, net.now))
    hosts["b"].listen(9000)
    net.connect("a", "b", LinkFaults(delay=0.01, bandwidth=2e6))
    conn = hosts["a"].connect("10.0.0.2", 9000, 0.0)
    sport = conn.local_port
    # The attacker's view: the 4-tuple, from each end.
    targets = [
        (hosts["b"], b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", sport, 9000),
        (hosts["a"], b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x01", 9000, sport),
    ]
    sent, next_volley = 0, 0.1

    def attack_until_transferred() -> bool:
        nonlocal sent, next_volley
        while net.now >= next_volley:
            for host, src, dst, s, d in targets:
                for _ in range(RATE // 100):  # a volley every 10 ms
                    host.receive_packet(build_tcp_packet(forged(rng, kind, s, d), src, dst), net.now)
                    sent += 1
            next_volley += 0.01
        return a.peer_closed and b.peer_closed

    net.run(until=attack_until_transferred, max_time=600)
    duration = net.now
    net.run(until=lambda: a.closed is not None and b.closed is not None, max_time=600)
    assert a.received_exactly(b_data) and b.received_exactly(a_data)
    assert a.closed is CloseReason.NORMAL and b.closed is CloseReason.NORMAL
    assert sent >= 2 * RATE * (duration - 0.1)  # the attack went on for the whole transfer, at both ends
    for end in (a, b):
        limit = end.conn.challenge_acks
        assert limit.allowed <= CHALLENGES_PER_SECOND * (duration + 1)
        if kind == "syn":  # every forged SYN asks for a challenge ACK: far more than the limit lets out
            assert limit.suppressed > limit.allowed
