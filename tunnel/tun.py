"""The TUN device: raw IP packets between the kernel and a user-space stack, on a non-blocking file descriptor.

The addresses given to ``TunDevice.open`` belong to the kernel: they are the kernel's own side of the device.
The user-space stack answers for other addresses, ones the kernel routes into the device. For example::

    tun = TunDevice.open("atcp0", addresses=["10.1.0.1/24"], netns=ns)

gives the kernel 10.1.0.1 and routes 10.1.0.0/24 into the device, so a stack reading ``tun`` can be 10.1.0.2:
``curl http://10.1.0.2/`` run in ``ns`` sends its SYN from 10.1.0.1 to 10.1.0.2, and ``read_batch`` returns it.
Service addresses outside the device's subnets (an anycast 192.0.2.1, say) reach it through ``routes``.
"""

import errno
import os
from collections.abc import Iterable

import pytun

from . import vnet
from ._checks import check_cidr, check_ifname, check_mtu, check_route, check_string_list
from .device import READ_BATCH, DeviceStats
from .netns import NetNamespace, ip_address_args, run_ip

# Read with room for the largest IP packet rather than the MTU: the kernel cuts a packet to the buffer without a
# word, and an MTU raised later with `ip link set` would otherwise truncate packets. os.read with 65535 costs the
# same as with 1500 (measured here: both about 1.1 µs per call).
READ_SIZE = 65535 + vnet.HEADER_LEN  # the largest IP packet, and the offload header before it
TX_QUEUE_LEN = 4096  # packets the kernel may hold for us while the loop is busy elsewhere

# Write failures that mean "not now" (the packet is lost, as on any link) rather than a bug in the caller:
# EAGAIN/EWOULDBLOCK and ENOBUFS under load, EIO while the interface is down.
_DROPPED = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EIO})
# Write failures that mean the kernel refused this packet: EINVAL when it does not start with an IPv4 or IPv6
# version nibble (or is empty), EMSGSIZE for an impossible length.
_REFUSED = frozenset({errno.EINVAL, errno.EMSGSIZE})


class TunDevice:
    """A TUN device (``IFF_TUN | IFF_NO_PI``: each read or write is one bare IP packet) implementing
    ``tunnel.device.Device``. The device lives as long as its file descriptor: ``close()`` makes it disappear
    with its addresses and routes."""

    def __init__(
        self, tun: pytun.TunTapDevice, mtu: int, netns: NetNamespace | None = None, *, vnet_hdr: bool = False
    ) -> None:
        self._tun = tun
        self._fd = tun.fileno()
        os.set_blocking(self._fd, False)
        os.set_inheritable(self._fd, False)  # pytun opens /dev/net/tun without O_CLOEXEC
        self.name: str = tun.name
        self.mtu = mtu
        self.netns = netns
        self.stats = DeviceStats()
        self._closed = False
        # With IFF_VNET_HDR every read and write carries a virtio_net_hdr (tunnel/vnet.py); ``offloads`` says what
        # the kernel granted ("csum+tso4+tso6": it hands us 64 KB super-segments it has already checksummed).
        self.vnet_hdr = vnet_hdr
        self.offloads = vnet.negotiate(self._fd) if vnet_hdr else "none"
        self.tso_limit = vnet.TSO_LIMIT if "tso" in self.offloads else 0  # TCP payload per super-segment we write
        self._send = self._send_vnet if vnet_hdr else self._send_plain
        if vnet_hdr:
            # Only an offloading device has read_batch_verified: the runtime looks for it, and plain packets must
            # have their checksums verified.
            self.read_batch_verified = self._read_batch_verified

    @classmethod
    def open(
        cls,
        name: str,
        *,
        addresses: Iterable[str],
        mtu: int = 1500,
        routes: Iterable[str] = (),
        netns: NetNamespace | None = None,
        offload: bool = True,
    ) -> "TunDevice":
        """Create TUN device ``name`` (in ``netns`` if given), set its MTU, give the kernel ``addresses`` on it
        (CIDR: "10.1.0.1/24", "fd00:1::1/64"), bring it up and route each prefix in ``routes`` into it.
        Everything is checked before anything is created; if a later step fails, the device is closed again.
        ``offload`` opens it with ``IFF_VNET_HDR`` and asks for checksum and TSO offloads (tunnel/vnet.py); a
        kernel that refuses gets a plain device."""
        check_ifname(name, "TUN name")
        addresses = check_string_list(addresses, "addresses", "10.1.0.1/24")
        routes = check_string_list(routes, "routes", "192.0.2.0/24")
        interfaces = [check_cidr(a) for a in addresses]
        networks = [check_route(r) for r in routes]
        check_mtu(mtu, ipv6=any(i.version == 6 for i in interfaces) or any(n.version == 6 for n in networks))

        def create(flags: int) -> pytun.TunTapDevice:
            return pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI | flags)

        where = f"in network namespace {netns.name}" if netns is not None else "in this network namespace"
        vnet_hdr = offload
        try:
            try:
                flags = pytun.IFF_VNET_HDR if offload else 0
                tun = netns.call_inside(create, flags) if netns is not None else create(flags)
            except pytun.Error:
                if not offload:
                    raise
                vnet_hdr = False  # a kernel without IFF_VNET_HDR on TUN: plain packets
                tun = netns.call_inside(create, 0) if netns is not None else create(0)
        except pytun.Error as exc:
            raise RuntimeError(
                f"could not create TUN device {name!r} {where}: {exc} (needs root and /dev/net/tun, and the name "
                "must not be taken)"
            ) from exc
        device = cls(tun, mtu, netns, vnet_hdr=vnet_hdr)
        ns = netns.name if netns is not None else None
        try:
            # The queue from the kernel to us: 500 packets by default, which a busy event loop overflows in bursts.
            run_ip(["link", "set", name, "mtu", str(mtu), "txqueuelen", str(TX_QUEUE_LEN)], netns=ns)
            for address in addresses:
                run_ip(ip_address_args(address, name), netns=ns)
            run_ip(["link", "set", name, "up"], netns=ns)  # first: the kernel refuses a route through a down link
            for network in networks:
                run_ip(["route", "add", str(network), "dev", name], netns=ns)
        except BaseException:
            device.close()
            raise
        return device

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, limit: int = READ_BATCH) -> list[bytes]:
        """Drain up to ``limit`` packets without blocking; ``[]`` when none are waiting. With offloads, checksums
        the kernel left to the device are filled in (the runtime reads with ``read_batch_verified`` instead)."""
        if not self.vnet_hdr:
            return self._counted(self._read_raw(limit))
        header_len, complete = vnet.HEADER_LEN, vnet.complete_checksum
        return self._counted([complete(data) for data in self._read_raw(limit) if len(data) > header_len])

    def _read_batch_verified(self, limit: int = READ_BATCH) -> tuple[list[bytes], list[int]]:
        """With IFF_VNET_HDR: like ``read_batch``, with each packet's NEEDS_CSUM and DATA_VALID flags
        (tunnel/vnet.py), non-zero when the kernel vouches for its checksum, which then needs no verification
        (and a NEEDS_CSUM one could not pass it)."""
        header_len, trusted = vnet.HEADER_LEN, vnet.TRUSTED
        raw = [data for data in self._read_raw(limit) if len(data) > header_len]  # a bare header carries nothing
        return self._counted([data[header_len:] for data in raw]), [data[0] & trusted for data in raw]

    def _read_raw(self, limit: int) -> list[bytes]:
        reads: list[bytes] = []
        fd, read, append = self._fd, os.read, reads.append
        try:
            for _ in range(limit):
                data = read(fd, READ_SIZE)
                if not data:
                    break
                append(data)
        except BlockingIOError:
            pass
        except OSError as exc:
            self._raise_if_closed(exc)
            raise
        return reads

    def _counted(self, packets: list[bytes]) -> list[bytes]:
        if packets:
            stats = self.stats
            stats.packets_in += len(packets)
            stats.bytes_in += sum(map(len, packets))
            stats.read_batches += 1
        return packets

    def write(self, packet: bytes) -> bool:
        """Hand ``packet`` to the kernel. False (and counted) if it was dropped or refused; never raises for what
        the packet contains."""
        try:
            self._send(packet)  # one whole packet per write on a TUN: there are no partial writes
        except OSError as exc:
            return self._write_failed(exc)
        stats = self.stats
        stats.packets_out += 1
        stats.bytes_out += len(packet)
        return True

    def write_batch(self, packets: Iterable[bytes]) -> int:
        """Write each packet in order; return how many the kernel took."""
        send, written, nbytes = self._send, 0, 0
        for packet in packets:
            try:
                send(packet)
            except OSError as exc:
                self._write_failed(exc)
                continue
            written += 1
            nbytes += len(packet)
        self.stats.packets_out += written
        self.stats.bytes_out += nbytes
        return written

    def _send_plain(self, packet: bytes) -> None:
        os.write(self._fd, packet)

    def _send_vnet(self, packet) -> None:
        os.writev(self._fd, vnet.buffers(packet))  # the header, then the packet (a TsoPacket in two parts)

    def _write_failed(self, exc: OSError) -> bool:
        if exc.errno in _DROPPED:
            self.stats.write_drops += 1
        elif exc.errno in _REFUSED:
            self.stats.write_errors += 1
        else:
            self._raise_if_closed(exc)
            raise exc
        return False

    def _raise_if_closed(self, exc: OSError) -> None:
        if self._closed:
            raise ValueError(f"I/O on closed TUN device {self.name}") from exc

    def close(self) -> None:
        """Close the file descriptor; the (non-persistent) device disappears with its addresses and routes."""
        if self._closed:
            return
        self._closed = True
        self._fd = -1
        self._tun.close()

    def __enter__(self) -> "TunDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" in {self.netns.name}" if self.netns is not None else ""
        return f"<TunDevice {self.name}{where} mtu={self.mtu}{' closed' if self._closed else ''}>"
