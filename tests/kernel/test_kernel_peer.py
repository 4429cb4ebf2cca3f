"""The Linux kernel's TCP as our peer: our stack on a TUN device in a network namespace, the kernel's sockets in
the same namespace reaching it through the device. Both address families, both directions, the kernel's
extensions switched off one at a time.
"""

import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from stack import Stack
from tests.conftest import require
from tests.kernel.services import echo, sink

PEER = str(Path(__file__).with_name("peer.py"))
FAMILIES = {4: ("10.71.0.2/24", "10.71.0.1"), 6: ("fd71::2/64", "fd71::1")}
US = {4: "10.71.0.2", 6: "fd71::2"}  # our stack's address
KERNEL = {4: "10.71.0.1", 6: "fd71::1"}  # the kernel's side of the TUN
KERNEL_CIDR = {4: "10.71.0.1/24", 6: "fd71::1/64"}
BIG = 200_000_000  # the issue: "Bulk 200 MB each direction with a sha256 check"


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def family(request) -> int:
    """Every kernel-peer test runs over both address families."""
    return request.param


@pytest.fixture
def netns():
    require(os.geteuid() == 0 and os.path.exists("/dev/net/tun"), "needs root and /dev/net/tun")
    from tunnel.netns import NetNamespace

    ns = NetNamespace.create()
    try:
        yield ns
    finally:
        ns.close()


def run(coro, timeout=300):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def peer(ns, *args) -> dict:
    """Run the kernel peer inside the namespace to completion; its last JSON line."""
    proc = ns.popen([sys.executable, PEER, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"peer printed nothing; stderr: {err.decode()[-2000:]}"
    return lines[-1]


async def start_peer(ns, *args) -> asyncio.Future:
    """Start a serving kernel peer; wait until it listens; return a future of its final report."""
    proc = ns.popen([sys.executable, PEER, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, proc.stdout.readline)
    assert b"listening" in first, first + proc.stderr.read()
    return loop.run_in_executor(None, lambda: json.loads(proc.communicate()[0].decode().splitlines()[-1]))


async def open_stack(ns, family: int, offload: bool = True) -> Stack:
    ours, _ = FAMILIES[family]
    return await Stack.open_tun("atcp" + ns.name[-8:], [ours], netns=ns, offload=offload)


@pytest.mark.root
def test_kernel_client_uploads_to_our_server_byte_exact(netns, family):
    async def main():
        async with await open_stack(netns, family) as stack:
            await stack.start_server(sink, None, 5001)
            result = await peer(netns, "connect-send", FAMILIES[family][0].split("/")[0], 5001, BIG, 1)
        return result

    result = run(main())
    assert result["error"] is None and result["sent"] == BIG
    assert result["head"] == hashlib.sha256(payload(BIG, 1)).hexdigest()  # our server's digest of what it got


@pytest.mark.root
def test_our_client_downloads_from_a_kernel_server_byte_exact(netns, family):
    async def main():
        async with await open_stack(netns, family) as stack:
            done = await start_peer(netns, "serve", 5002, "source", BIG, 2)
            reader, writer = await stack.open_connection(FAMILIES[family][1], 5002)
            digest, total = hashlib.sha256(), 0
            while chunk := await reader.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
            writer.close()
            report = await done
        assert report["error"] is None and report["sent"] == BIG
        assert total == BIG
        assert digest.digest() == hashlib.sha256(payload(BIG, 2)).digest()

    run(main())


@pytest.mark.root
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_both_directions_at_once_byte_exact(netns, family, offload):
    """200 MB each way at once; with offloads the device hands over and takes 64 KB super-segments."""

    async def duplex(reader, writer):
        async def upload_back():
            writer.write(payload(BIG, 4))
            await writer.drain()
            writer.write_eof()

        sending = asyncio.ensure_future(upload_back())
        offset, first_difference = 0, None
        while chunk := await reader.read(1 << 20):
            want = expected[offset : offset + len(chunk)]
            if first_difference is None and chunk != want:
                pairs = enumerate(zip(chunk, want))
                first_difference = offset + next((i for i, (a, b) in pairs if a != b), len(want))
            offset += len(chunk)
        received.append((offset, first_difference))
        await sending
        writer.close()

    expected = payload(BIG, 3)
    received = []

    async def main():
        async with await open_stack(netns, family, offload) as stack:
            await stack.start_server(duplex, None, 5003)
            result = await peer(netns, "connect-duplex", FAMILIES[family][0].split("/")[0], 5003, BIG, 3)
            # The kernel's peer is done once its last bytes are in its socket buffer, not in our reader: leaving
            # this block too soon would abort the connection under the handler (it then saw a short EOF).
            for _ in range(600):
                if received:
                    break
                await asyncio.sleep(0.05)
            stats = stack.device.stats
            return result, stats.bytes_in / stats.packets_in, stats.bytes_out / stats.packets_out

    result, mean_in, mean_out = run(main())
    # Super-segments both ways with offloads (the mean packet far above the MTU), none without.
    assert (mean_in > 3000 and mean_out > 3000) if offload else (mean_in <= 1500 and mean_out <= 1500)
    assert result["error"] is None
    assert received == [(BIG, None)], "(bytes received, offset of the first wrong byte)"
    assert result["received"] == BIG and result["sha256"] == hashlib.sha256(payload(BIG, 4)).hexdigest()


@pytest.mark.root
def test_our_half_close_lets_the_kernel_answer(netns, family):
    async def main():
        async with await open_stack(netns, family) as stack:
            done = await start_peer(netns, "serve", 5004, "sink")
            reader, writer = await stack.open_connection(KERNEL[family], 5004)
            data = payload(8_000_000, 5)
            writer.write(data)
            writer.write_eof()
            reply = await reader.read()
            await done
            return reply, data

    reply, data = run(main())
    assert reply.decode() == hashlib.sha256(data).hexdigest()


@pytest.mark.root
def test_our_abort_resets_the_kernel_side(netns, family):
    async def abort_at_once(reader, writer):
        await reader.readexactly(5)
        writer.transport.abort()

    async def main():
        async with await open_stack(netns, family) as stack:
            await stack.start_server(abort_at_once, None, 5005)
            return await peer(netns, "connect-expect-reset", US[family], 5005)

    assert run(main())["error"] is None


@pytest.mark.root
def test_kernel_reset_reaches_our_reader_as_connection_reset(netns, family):
    outcome = []

    async def wait_for_reset(reader, writer):
        try:
            await reader.readexactly(5)
            await reader.read()
            outcome.append("eof")
        except ConnectionResetError:
            outcome.append("reset")

    async def main():
        async with await open_stack(netns, family) as stack:
            await stack.start_server(wait_for_reset, None, 5006)
            await peer(netns, "connect-reset", US[family], 5006)
            for _ in range(100):
                if outcome:
                    break
                await asyncio.sleep(0.02)

    run(main())
    assert outcome == ["reset"]


@pytest.mark.root
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_an_echo_service_under_a_bulk_upload_keeps_both_directions_moving(netns, family, offload):
    """The kernel sends 30 MB while it reads the echo: our service stops reading whenever its writes back wait
    in drain(), and must still hear that room was made (SendSpace does not queue behind unread data)."""
    size = 30_000_000

    async def main():
        async with await open_stack(netns, family, offload) as stack:
            await stack.start_server(echo, None, 5010)
            return await peer(netns, "connect-duplex", US[family], 5010, size, 11)

    result = run(main(), timeout=120)
    assert result["error"] is None
    assert result["received"] == size and result["sha256"] == hashlib.sha256(payload(size, 11)).hexdigest()


@pytest.mark.root
def test_a_thousand_concurrent_kernel_connections_exchange_data(netns, family):
    async def main():
        async with await open_stack(netns, family) as stack:
            await stack.start_server(echo, None, 5007, backlog=1024)
            return await peer(netns, "connect-many", US[family], 5007, 1000, 2000)

    result = run(main())
    assert result["error"] is None
    assert result["received"] == 1000 * 2000


@pytest.mark.root
def test_kernel_receiver_that_stops_reading_closes_our_window_then_everything_arrives(netns, family):
    async def main():
        async with await open_stack(netns, family) as stack:
            done = await start_peer(netns, "serve", 5008, "slow-sink")
            reader, writer = await stack.open_connection(KERNEL[family], 5008)
            data = payload(16_000_000, 8)
            writer.write(data)
            writer.write_eof()
            reply = await reader.read()
            await done
            return reply, data, writer.transport.connection.tx.window_probes

    reply, data, probes = run(main())
    assert reply.decode() == hashlib.sha256(data).hexdigest()
    assert probes > 0  # the kernel's window really closed and we probed it


@pytest.mark.root
@pytest.mark.parametrize("sysctl", ["net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps", "net.ipv4.tcp_window_scaling"])
def test_kernel_peer_without_an_extension(netns, sysctl, family):
    netns.run(["sysctl", "-qw", f"{sysctl}=0"], check=True)

    async def main():
        async with await open_stack(netns, family) as stack:
            done = await start_peer(netns, "serve", 5009, "source", 16_000_000, 9)
            reader, writer = await stack.open_connection(KERNEL[family], 5009)
            digest, total = hashlib.sha256(), 0
            while chunk := await reader.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
            info = writer.get_extra_info("tcp_info")
            await done
            return digest.digest(), total, info

    digest, total, info = run(main())
    assert total == 16_000_000 and digest == hashlib.sha256(payload(16_000_000, 9)).digest()
    negotiated = {"net.ipv4.tcp_sack": info.sack, "net.ipv4.tcp_timestamps": info.timestamps}
    negotiated["net.ipv4.tcp_window_scaling"] = info.snd_wscale != 0
    assert negotiated[sysctl] is False


@pytest.mark.root
@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_kernel_transfers_through_loss_reordering_duplication_and_delay_are_byte_exact(netns, rate, family):
    from tunnel.faults import Faults

    size = 8_000_000

    async def main():
        faults = Faults(loss=rate, duplicate=rate, reorder=rate, delay=0.002, jitter=0.002)
        ours, _ = FAMILIES[family]
        async with await Stack.open_tun("atcp" + netns.name[-8:], [ours], netns=netns, faults=faults, seed=7) as s:
            await s.start_server(sink, None, 5010)
            upload = await peer(netns, "connect-send", US[family], 5010, size, 10)
            done = await start_peer(netns, "serve", 5011, "source", size, 11)
            reader, _ = await s.open_connection(KERNEL[family], 5011)
            downloaded = hashlib.sha256()
            while chunk := await reader.read(1 << 20):
                downloaded.update(chunk)
            await done
            return upload, downloaded.hexdigest(), s.device

    upload, downloaded, device = run(main())
    assert upload["error"] is None and upload["head"] == hashlib.sha256(payload(size, 10)).hexdigest()
    assert downloaded == hashlib.sha256(payload(size, 11)).hexdigest()
    assert device.lost and device.duplicated and device.reordered  # the faults really happened


class LoseFirstFin:
    """A device wrapper that loses our first outgoing FIN, so the kernel's FIN is sent before ours arrives."""

    def __init__(self, device) -> None:
        self.device = device
        self.mtu, self.stats = device.mtu, device.stats
        self.lost_fin = False

    def fileno(self):
        return self.device.fileno()

    def read_batch(self, limit=64):
        return self.device.read_batch(limit)

    def write_batch(self, packets) -> int:
        keep = []
        for packet in packets:
            if packet[0] >> 4 == 4:
                is_fin = packet[9] == 6 and packet[(packet[0] & 0xF) * 4 + 13] & 0x01
            else:
                is_fin = packet[6] == 6 and packet[40 + 13] & 0x01  # no extension headers from our stack
            if is_fin and not self.lost_fin:
                self.lost_fin = True
                continue
            keep.append(packet)
        return self.device.write_batch(keep)

    def close(self) -> None:
        self.device.close()


@pytest.mark.root
def test_simultaneous_close_with_the_kernel_goes_through_closing_to_time_wait(netns, family):
    """RFC 9293 §3.6 case 2: both ends close before either sees the other's FIN. Our first FIN is lost on the
    way out, so the kernel's FIN reaches us while ours is unacknowledged: FIN-WAIT-1 -> CLOSING -> TIME-WAIT."""
    from stack.tcp.state import State
    from tunnel.tun import TunDevice

    seen = []

    async def close_on_first_byte(reader, writer):
        await reader.readexactly(1)
        conn = writer.transport.connection
        writer.write_eof()  # our FIN (lost once by the device)
        while conn.state is not State.TIME_WAIT and len(seen) < 1000:
            if not seen or seen[-1] is not conn.state:
                seen.append(conn.state)
            await asyncio.sleep(0.002)
        seen.append(conn.state)

    async def main():
        loop = asyncio.get_running_loop()
        tun = await loop.run_in_executor(
            None,
            lambda: TunDevice.open("atcp" + netns.name[-8:], addresses=[KERNEL_CIDR[family]], netns=netns),
        )
        device = LoseFirstFin(tun)
        async with Stack(device, [FAMILIES[family][0]]) as stack:
            await stack.start_server(close_on_first_byte, None, 5012)
            result = await peer(netns, "connect-close-after", US[family], 5012, 0.1)
            for _ in range(200):
                if seen and seen[-1] is State.TIME_WAIT:
                    break
                await asyncio.sleep(0.01)
        return result, device.lost_fin

    result, lost_fin = run(main())
    assert lost_fin and result["error"] is None and result["received"] == 0
    assert State.CLOSING in seen and seen[-1] is State.TIME_WAIT, seen
