"""PeerSocket over loopback, IPv4 and IPv6: sealed datagrams cross and open; failures are counted, not raised."""

import asyncio
import socket

import pytest

try:
    import uvloop
except ImportError:  # not on this platform (pyproject installs it on Linux only)
    uvloop = None

from tests.conftest import require
from tunnel.encap import Opener, Sealer
from tunnel.keys import ClusterKeys
from tunnel.peer import PeerSocket

KEYS = ClusterKeys(1, {1: bytes(range(32))})
PACKET = bytes.fromhex("45000020123440004001a4a5c0000201c00002020800192d0001000170696e67")


def run(coro, loop_factory=None):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(coro, 10))


LOOPS = [pytest.param(None, id="asyncio")]
if uvloop is not None:
    LOOPS.append(pytest.param(uvloop.new_event_loop, id="uvloop"))


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_sealed_datagrams_cross_loopback_and_open(host, loop_factory):
    if host == "::1":
        require(has_ipv6_loopback(), "needs an IPv6 loopback address")

    async def main():
        received: asyncio.Queue = asyncio.Queue()
        a = await PeerSocket.open((host, 0), lambda data, addr: None)
        b = await PeerSocket.open((host, 0), lambda data, addr: received.put_nowait((data, addr)))
        try:
            sealer, opener = Sealer(7, 1, KEYS), Opener(KEYS, [7])
            datagrams = [sealer.data(PACKET), sealer.control(b"\x01hello")]
            assert all(a.sendto(d, b.local_address) for d in datagrams)
            got = [await received.get() for _ in datagrams]
            assert [opener.open(data).payload for data, _ in got] == [PACKET, b"\x01hello"]
            assert got[0][1][:2] == a.local_address[:2]  # the sender's address, to reply to
            assert (a.stats.datagrams_out, b.stats.datagrams_in) == (2, 2)
            assert b.stats.bytes_in == sum(map(len, datagrams))
        finally:
            a.close()
            b.close()
            b.close()  # idempotent

    run(main(), loop_factory)


def test_send_failures_are_counted_not_raised():
    async def main():
        peer = await PeerSocket.open(("127.0.0.1", 0), lambda data, addr: None)
        try:
            assert not peer.sendto(b"x", ("::1", 9))  # wrong family for an IPv4 socket
            assert not peer.sendto(b"x" * 70_000, ("127.0.0.1", 9))  # larger than any UDP datagram
            assert peer.stats.send_errors == 2 and "127.0.0.1" in peer.stats.last_send_error
        finally:
            peer.close()
        with pytest.raises(ValueError, match="sendto on a closed PeerSocket"):
            peer.sendto(b"x", ("127.0.0.1", 9))

    run(main())


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (("localhost", 6080), "listen host 'localhost' must be an IP address like '0.0.0.0', '::'"),
        (("127.0.0.1", 70000), "listen port 70000 must be 0 to 65535"),
        ("127.0.0.1:6080", "listen must be a \\(host, port\\) tuple like"),
    ],
)
def test_bad_listen_address_is_one_line_value_error(listen, message):
    with pytest.raises(ValueError, match=message):
        run(PeerSocket.open(listen, lambda data, addr: None))


def test_port_in_use_names_the_address_and_the_fix():
    async def main():
        first = await PeerSocket.open(("127.0.0.1", 0), lambda data, addr: None)
        try:
            with pytest.raises(OSError, match=r"cannot listen on UDP 127\.0\.0\.1 port \d+: .*no other process"):
                await PeerSocket.open(first.local_address, lambda data, addr: None)
        finally:
            first.close()

    run(main())
