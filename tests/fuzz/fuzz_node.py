"""A coverage-guided fuzzer (atheris, libFuzzer's engine) over the packet boundary of a whole anycast node.

Each input is a script of steps read from the fuzzer's bytes: a raw packet from the Internet side, a TCP segment
built from fuzzed fields (so it passes the checksums and reaches the TCP state machine), a raw tunnel datagram,
an authentic tunnel datagram (sealed with the cluster key) carrying fuzzed bytes as a forwarded packet or a control
message, or time passing with the timers firing. The invariant: nothing raises, half-open connections stay within
the backlog.

    python tests/fuzz/fuzz_node.py -max_total_time=600          # a campaign; libFuzzer's flags all work
    python tests/fuzz/fuzz_node.py -runs=20000 -seed=1          # a bounded one (CI runs one of these)
"""

import logging
import sys

import atheris
import structlog

with atheris.instrument_imports(include=["stack", "tunnel", "appliance"]):
    from node_under_fuzz import KEYS, SERVICE, make_node  # (this script's own directory)

    from stack.tcp.state import State
    from stack.wire import parse_ip, parse_tcp
    from stack.wire.tcp import TcpOptions, TcpSegment, build_tcp_packet
    from tunnel.encap import Sealer

CLIENT = bytes([198, 51, 100, 1])
BACKLOG = 2  # small, so that four client ports overflow it and SYN cookies are fuzzed too
SEALERS = {2: Sealer(2, incarnation=1, keys=KEYS), 3: Sealer(3, incarnation=1, keys=KEYS)}


def segment(fdp: atheris.FuzzedDataProvider) -> bytes:
    flags = fdp.ConsumeIntInRange(0, 255)
    syn = bool(flags & 0x02)  # MSS, window scale and SACK-permitted only ride on a SYN (the builder checks)
    options = TcpOptions(
        mss=fdp.ConsumeIntInRange(0, 65535) if syn and fdp.ConsumeBool() else None,
        window_scale=fdp.ConsumeIntInRange(0, 14) if syn and fdp.ConsumeBool() else None,
        sack_permitted=syn and fdp.ConsumeBool(),
        timestamps=(fdp.ConsumeInt(4) & 0xFFFFFFFF, fdp.ConsumeInt(4) & 0xFFFFFFFF) if fdp.ConsumeBool() else None,
    )
    seg = TcpSegment(
        src_port=fdp.ConsumeIntInRange(1, 4),
        dst_port=80 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 65535),
        seq=fdp.ConsumeInt(4) & 0xFFFFFFFF,
        ack=fdp.ConsumeInt(4) & 0xFFFFFFFF,
        flags=flags,
        window=fdp.ConsumeIntInRange(0, 65535),
        payload=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)),
        options=options,
    )
    return build_tcp_packet(seg, CLIENT, SERVICE)


def syn(fdp: atheris.FuzzedDataProvider) -> bytes:
    """A well-formed SYN to the listener from one of eight ports: enough of them overflow the backlog."""
    timestamps = (fdp.ConsumeInt(4) & 0xFFFFFFFF, 0) if fdp.ConsumeBool() else None
    options = TcpOptions(
        mss=1460, window_scale=fdp.ConsumeIntInRange(0, 14), sack_permitted=True, timestamps=timestamps
    )
    seg = TcpSegment(fdp.ConsumeIntInRange(1, 8), 80, fdp.ConsumeInt(4) & 0xFFFFFFFF, 0, 0x02, 65535, b"", options)
    return build_tcp_packet(seg, CLIENT, SERVICE)


def answer(fdp: atheris.FuzzedDataProvider, syn_ack: TcpSegment) -> bytes:
    """The client's ACK to a SYN,ACK the node sent (a cookie's, when the backlog was full), perhaps with data,
    perhaps echoing its timestamp with some bits changed."""
    echoed = syn_ack.options.timestamps[0] ^ fdp.ConsumeIntInRange(0, 63) if syn_ack.options.timestamps else None
    options = TcpOptions(timestamps=(fdp.ConsumeInt(4) & 0xFFFFFFFF, echoed) if echoed is not None else None)
    seq, ack = syn_ack.ack, (syn_ack.seq + 1 + fdp.ConsumeIntInRange(0, 1)) & 0xFFFFFFFF
    payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 100))
    seg = TcpSegment(syn_ack.dst_port, syn_ack.src_port, seq, ack, 0x10 | 0x08, 65535, payload, options)
    return build_tcp_packet(seg, CLIENT, SERVICE)


def syn_acks(packets: list) -> list[TcpSegment]:
    found = []
    for raw in packets:
        try:
            ip = parse_ip(bytes(raw))
            seg = parse_tcp(ip.payload, ip.src, ip.dst)
        except Exception:
            continue
        if seg.flags & 0x12 == 0x12:
            found.append(seg)
    return found


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    node = make_node(BACKLOG)
    now = 0.0
    offers: list[TcpSegment] = []  # SYN,ACKs the node sent, for the client to answer
    for _ in range(fdp.ConsumeIntInRange(1, 24)):
        if fdp.remaining_bytes() == 0:
            break
        step = fdp.ConsumeIntInRange(0, 7)
        if step == 0:
            node.receive_packet(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)), now)
        elif step == 1:
            node.receive_packet(segment(fdp), now)
        elif step == 2:
            node.receive_datagram(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)), now)
        elif step == 3:
            sealer = SEALERS[fdp.ConsumeIntInRange(2, 3)]
            packet = segment(fdp) if fdp.ConsumeBool() else b"\x45" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
            node.receive_datagram(sealer.data(packet, hops=fdp.ConsumeIntInRange(1, 2)), now)
        elif step == 4:
            message = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 300)) or b"\x00"
            node.receive_datagram(SEALERS[fdp.ConsumeIntInRange(2, 3)].control(message), now)
        elif step == 5:
            node.receive_packet(syn(fdp), now)
        elif step == 6:
            if offers:
                node.receive_packet(answer(fdp, offers[fdp.ConsumeIntInRange(0, len(offers) - 1)]), now)
        else:
            now += fdp.ConsumeIntInRange(1, 5000) / 1000
            deadline = node.get_timer()
            if deadline is not None and deadline <= now:
                node.handle_timer(now)
        offers = (offers + syn_acks(node.packets_to_send(now)))[-8:]
        node.datagrams_to_send(now)
        while node.next_event() is not None:
            pass
    half_open = sum(c.state is State.SYN_RECEIVED for c in node.host.connections.values())
    if half_open > BACKLOG:
        raise AssertionError(f"{half_open} half-open connections with a backlog of {BACKLOG}")


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
