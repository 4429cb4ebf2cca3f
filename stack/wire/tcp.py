"""TCP header and options (RFC 9293 §3.1–3.2, RFC 7323, RFC 2018): parse a segment, build one or a packet."""

import struct
from dataclasses import dataclass

from ._buffer import as_bytes
from .errors import WireError
from .ip import PROTO_TCP

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40  # RFC 3168 §6.1
CWR = 0x80  # RFC 3168 §6.1

_FLAG_NAMES = tuple(
    zip((FIN, SYN, RST, PSH, ACK, URG, ECE, CWR), ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"))
)

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3  # RFC 7323 §2.2
OPT_SACK_PERMITTED = 4  # RFC 2018 §2
OPT_SACK = 5  # RFC 2018 §3
OPT_TIMESTAMPS = 8  # RFC 7323 §3.2
_KNOWN_KINDS = frozenset((OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERMITTED, OPT_SACK, OPT_TIMESTAMPS))

# RFC 7323 §2.3: "If a Window Scale option is received with a shift.cnt value larger than 14, the TCP SHOULD
# log the error but MUST use 14 instead of the specified value."
MAX_WINDOW_SCALE = 14
# The 4-bit Data Offset (RFC 9293 §3.1) caps the header at 60 bytes, 40 of them options.
MAX_OPTIONS_LENGTH = 40
# RFC 2018 §3: "a SACK option that specifies n blocks will have a length of 8*n+2 bytes, so the 40 bytes
# available for TCP options can specify a maximum of 4 blocks."
MAX_SACK_BLOCKS = 4

_TCP = struct.Struct("!HHIIHHHH")
_IPV4_TCP = struct.Struct("!BBHHHBBH4s4sHHIIHHHH")
_IPV6_TCP = struct.Struct("!IHBB16s16sHHIIHHHH")
_MSS = struct.Struct("!BBH")
_U32_PAIR = struct.Struct("!II")
_SACK_BLOCKS = tuple(struct.Struct(f"!{2 * n}I") for n in range(MAX_SACK_BLOCKS + 1))

# The two ways Linux (tcp_options_write) lays out timestamps on a 4-byte boundary.
_NOP_NOP_TS = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10))
_SACK_PERMITTED_TS = bytes((OPT_SACK_PERMITTED, 2, OPT_TIMESTAMPS, 10))
_NOP_NOP_SACK_PERMITTED = bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))

_DF = 0x4000  # RFC 791 §3.1: flags bit 1, Don't Fragment


def flags_str(flags: int) -> str:
    """``"SYN|ACK"``: the set flags, lowest bit first, and any bits above the eight flags in hex."""
    names = [name for bit, name in _FLAG_NAMES if flags & bit]
    if flags & ~0xFF:
        names.append(hex(flags & ~0xFF))
    return "|".join(names)


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The options of one segment; ``malformed`` says something in the list was unreadable or ignored."""

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    unknown: tuple[tuple[int, bytes], ...] = ()
    malformed: bool = False


NO_OPTIONS = TcpOptions()


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment as the connection sees it: header fields, options and payload, no addresses."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes = b""
    options: TcpOptions = NO_OPTIONS
    urgent: int = 0

    @property
    def syn(self) -> bool:
        return self.flags & SYN != 0

    @property
    def fin(self) -> bool:
        return self.flags & FIN != 0

    @property
    def rst(self) -> bool:
        return self.flags & RST != 0

    @property
    def has_ack(self) -> bool:
        return self.flags & ACK != 0

    @property
    def psh(self) -> bool:
        return self.flags & PSH != 0

    @property
    def urg(self) -> bool:
        return self.flags & URG != 0

    @property
    def seg_len(self) -> int:
        """RFC 9293 §3.4: "SEG.LEN = the number of octets occupied by the data in the segment (counting SYN
        and FIN)"."""
        flags = self.flags
        return len(self.payload) + (flags & FIN) + ((flags >> 1) & 1)


def parse_options(raw) -> TcpOptions:
    """Read an option list the way Linux's tcp_parse_options does; never raises for any bytes.

    RFC 9293 §3.1 (MUST-5): "A TCP implementation MUST be able to receive a TCP Option in any segment", so
    every option is read whatever the flags (MSS on a non-SYN included); whether to act on it is the
    connection's business. RFC 9293 §3.2 (MUST-64): "receivers MUST be prepared to process options even if
    they do not begin on a word boundary", so the walk goes byte by byte with no alignment assumed. A
    duplicated option overwrites the earlier one (last one wins, as in Linux); unknown options are all kept.
    """
    if type(raw) is not bytes:
        raw = as_bytes(raw)
    n = len(raw)
    if not n:
        return NO_OPTIONS
    if n == 12 and raw.startswith(_NOP_NOP_TS):
        # The options of nearly every segment of a connection with timestamps.
        return TcpOptions(timestamps=_U32_PAIR.unpack_from(raw, 4))
    mss = window_scale = timestamps = None
    sack_permitted = malformed = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    unknown = []
    i = 0
    while i < n:
        kind = raw[i]
        if kind == OPT_EOL:
            # RFC 9293 §3.2: EOL "indicates the end of the option list". What follows MUST be zeros (MUST-69)
            # but, as in Linux, is not checked: it is padding either way.
            break
        if kind == OPT_NOP:
            i += 1
            continue
        # RFC 9293 §3.1 (MUST-68): "All TCP Options except End of Option List Option (EOL) and No-Operation
        # (NOP) MUST have length fields, including all future options."
        # RFC 9293 §3.1 (MUST-7): "TCP implementations MUST be prepared to handle an illegal option length
        # (e.g., zero); a suggested procedure is to reset the connection and log the error cause."
        # DEVIATION: the RFC suggests a reset; Linux stops parsing at the bad length and keeps what came
        # before; we do as Linux, so a peer's odd option never costs a connection, and flag it for the count
        # and log.
        if i + 1 >= n:
            malformed = True
            break
        length = raw[i + 1]
        if length < 2 or i + length > n:
            malformed = True
            break
        # A known kind with the wrong length is ignored, as Linux does by checking opsize for each kind.
        if kind == OPT_TIMESTAMPS:
            if length == 10:
                timestamps = _U32_PAIR.unpack_from(raw, i + 2)
            else:
                malformed = True
        elif kind == OPT_MSS:
            if length == 4:
                mss = (raw[i + 2] << 8) | raw[i + 3]
            else:
                malformed = True
        elif kind == OPT_WSCALE:
            if length == 3:
                # Clamped here (RFC 7323 §2.3, see MAX_WINDOW_SCALE) so no caller can shift by more; the
                # option itself is well formed, so malformed stays False.
                window_scale = min(raw[i + 2], MAX_WINDOW_SCALE)
            else:
                malformed = True
        elif kind == OPT_SACK_PERMITTED:
            if length == 2:
                sack_permitted = True
            else:
                malformed = True
        elif kind == OPT_SACK:
            count, remainder = divmod(length - 2, 8)
            if remainder == 0 and 1 <= count <= MAX_SACK_BLOCKS:
                edges = _SACK_BLOCKS[count].unpack_from(raw, i + 2)
                sack_blocks = tuple(zip(edges[::2], edges[1::2]))
            else:
                malformed = True
        else:
            # RFC 9293 §3.1 (MUST-6): "A TCP implementation MUST ... ignore without error any TCP Option it
            # does not implement, assuming that the option has a length field." Kept, in order, for logs and
            # tests.
            unknown.append((kind, raw[i + 2 : i + length]))
        i += length
    return TcpOptions(mss, window_scale, sack_permitted, sack_blocks, timestamps, tuple(unknown), malformed)


def build_options(opts: TcpOptions) -> bytes:
    """Encode options in Linux's order and layout (tcp_options_write), padded to a multiple of 4 bytes.

    MSS; then timestamps, led by SACK-permitted when both are sent, else by two NOPs; SACK-permitted alone
    behind two NOPs; NOP and window scale; two NOPs and the SACK blocks; unknown options last. ``malformed``
    is ignored. ValueError for a field out of range or more than 40 bytes in all.
    """
    parts = []
    try:
        if opts.mss is not None:
            parts.append(_MSS.pack(OPT_MSS, 4, opts.mss))
        if opts.timestamps is not None:
            parts.append(_SACK_PERMITTED_TS if opts.sack_permitted else _NOP_NOP_TS)
            parts.append(_U32_PAIR.pack(*opts.timestamps))
        elif opts.sack_permitted:
            parts.append(_NOP_NOP_SACK_PERMITTED)
        if opts.window_scale is not None:
            if not 0 <= opts.window_scale <= MAX_WINDOW_SCALE:
                raise ValueError(f"window scale {opts.window_scale} over {MAX_WINDOW_SCALE} (RFC 7323 §2.3)")
            parts.append(bytes((OPT_NOP, OPT_WSCALE, 3, opts.window_scale)))
        blocks = opts.sack_blocks
        if blocks:
            if len(blocks) > MAX_SACK_BLOCKS:
                raise ValueError(f"{len(blocks)} SACK blocks; at most {MAX_SACK_BLOCKS} fit (RFC 2018 §3)")
            parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks))))
            parts.extend(_U32_PAIR.pack(left, right) for left, right in blocks)
        for kind, data in opts.unknown:
            if kind in _KNOWN_KINDS:
                raise ValueError(f"option kind {kind} has its own field and cannot be sent as unknown")
            if len(data) > MAX_OPTIONS_LENGTH - 2:
                raise ValueError(f"option kind {kind} with {len(data)} data bytes cannot fit")
            parts.append(bytes((kind, len(data) + 2)))
            parts.append(bytes(data))
    except struct.error as exc:
        raise ValueError(f"TCP option field out of range: {exc}") from None
    raw = b"".join(parts)
    if len(raw) & 3:
        # RFC 9293 §3.1 (MUST-69): "The content of the header beyond the End of Option List Option MUST be
        # header padding of zeros." EOL is kind 0, so padding with zero bytes is EOL followed by that padding.
        raw += bytes(4 - (len(raw) & 3))
    if len(raw) > MAX_OPTIONS_LENGTH:
        raise ValueError(f"{len(raw)} bytes of TCP options exceed {MAX_OPTIONS_LENGTH}")
    return raw


def parse_tcp(data, src: bytes, dst: bytes, *, verify_checksum: bool = True) -> TcpSegment:
    """Parse a TCP segment (header, options, payload) carried between ``src`` and ``dst``."""
    if type(data) is not bytes:
        data = as_bytes(data)
    n = len(data)
    if n < 20:
        raise WireError(f"TCP header needs 20 bytes, have {n}")
    src_port, dst_port, seq, ack, offset_flags, window, _checksum, urgent = _TCP.unpack_from(data)
    header_length = (offset_flags >> 10) & 0x3C
    if header_length < 20 or header_length > n:
        raise WireError(f"TCP data offset {header_length} with {n} bytes")
    if verify_checksum:
        # RFC 9293 §3.1: "The TCP checksum is never optional. The sender MUST generate it (MUST-2) and the
        # receiver MUST check it (MUST-3)." The pseudo-header (protocol 6, never zero) is added as a folded
        # sum (2**16 ≡ 1 mod 0xFFFF); a correct segment then sums to all ones, residue 0.
        address_length = len(src)
        if address_length != len(dst) or (address_length != 4 and address_length != 16):
            raise ValueError(f"addresses must both be 4 or 16 bytes, not {len(src)} and {len(dst)}")
        if address_length == 4 and n > 0xFFFF:
            raise WireError(f"TCP segment of {n} bytes cannot travel in IPv4")
        residue = int.from_bytes(data, "big") % 0xFFFF
        if n & 1:
            residue <<= 8
        if (residue + int.from_bytes(src + dst, "big") + PROTO_TCP + n) % 0xFFFF:
            raise WireError("bad TCP checksum")
    # RFC 9293 §3.1: the reserved bits "must be ignored in received segments", hence the mask to the 8 flags.
    options = NO_OPTIONS if header_length == 20 else parse_options(data[20:header_length])
    flags = offset_flags & 0xFF
    return TcpSegment(src_port, dst_port, seq, ack, flags, window, data[header_length:], options, urgent)


def _encode(seg: TcpSegment, addresses: int, partial: bool = False) -> tuple[bytes, int, int, int]:
    """``(options bytes, data offset and flags word, TCP length, checksum)`` for ``seg``.

    ``addresses`` is the source and destination read as one integer: with 2**16 ≡ 1 (mod 0xFFFF) it stands for
    their word sum, as each 32-bit field of the header does for its two words, so the checksum needs one pass
    over the payload only and the header is packed once, checksum included. ``partial`` leaves the field as a
    device with checksum offload wants it (Linux's CHECKSUM_PARTIAL): the folded pseudo-header sum alone, for
    the device to add the segment's own sum to and complement.
    """
    flags = seg.flags
    if flags >> 8:
        raise ValueError(f"TCP flags {flags:#x} do not fit in 8 bits")
    options = seg.options
    if options is NO_OPTIONS:
        raw_options = b""
    else:
        if not flags & SYN and (options.mss is not None or options.window_scale is not None or options.sack_permitted):
            # RFC 9293 §3.2 (MUST-65): MSS "may be sent in the initial connection request (i.e., in segments
            # with the SYN control bit set) and MUST NOT be sent in other segments". RFC 2018 §2:
            # SACK-permitted "MUST NOT be sent on non-SYN segments". RFC 7323 §2.2: window scale is sent in a
            # <SYN> or <SYN,ACK> only.
            raise ValueError(f"MSS, window scale or SACK-permitted on a segment without SYN: {options}")
        raw_options = build_options(options)
    payload = seg.payload
    tcp_length = 20 + len(raw_options) + len(payload)
    offset_flags = ((20 + len(raw_options)) << 10) | flags
    if partial:
        # Never zero (the protocol word is 6): a zero residue is the folded sum 0xFFFF.
        return raw_options, offset_flags, tcp_length, (addresses + PROTO_TCP + tcp_length) % 0xFFFF or 0xFFFF
    # The payload's residue first: every addition to its big integer would copy it.
    residue = int.from_bytes(payload, "big") % 0xFFFF
    if len(payload) & 1:
        residue <<= 8  # the zero byte that pads it to a whole word (RFC 9293 §3.1)
    # Never zero (the protocol word is 6), so a zero residue is a folded sum of 0xFFFF and a checksum of 0.
    residue = (
        residue
        + addresses
        + PROTO_TCP
        + tcp_length
        + seg.src_port
        + seg.dst_port
        + seg.seq
        + seg.ack
        + offset_flags
        + seg.window
        + seg.urgent
        + int.from_bytes(raw_options, "big")
    ) % 0xFFFF
    return raw_options, offset_flags, tcp_length, 0xFFFF - residue if residue else 0


def build_tcp(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """The TCP segment (header, options, payload) with its checksum for the ``src``/``dst`` pseudo-header."""
    if len(src) != len(dst) or len(src) not in (4, 16):
        raise ValueError(f"addresses must both be 4 or 16 bytes, not {len(src)} and {len(dst)}")
    raw_options, offset_flags, tcp_length, checksum = _encode(seg, int.from_bytes(src + dst, "big"))
    if len(src) == 4 and tcp_length > 0xFFFF:
        raise ValueError(f"TCP segment of {tcp_length} bytes cannot travel in IPv4")
    try:
        header = _TCP.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, offset_flags, seg.window, checksum, seg.urgent)
    except struct.error as exc:
        raise ValueError(f"TCP header field out of range: {exc}") from None
    return header + raw_options + seg.payload


def build_tcp_packet(
    seg: TcpSegment,
    src: bytes,
    dst: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    partial_checksum: bool = False,
    headers_only: bool = False,
) -> bytes:
    """IP header and TCP segment, by address family: the builder the host calls for every segment it sends.

    IPv4 goes with Don't Fragment set (RFC 1191 path MTU discovery) and Identification 0, which RFC 6864 §4.1
    allows for such atomic datagrams: "Originating sources MAY set the IPv4 ID field of atomic datagrams to
    any value." ``tos`` is the IPv4 TOS / IPv6 Traffic Class byte (DSCP << 2, RFC 2474). ``partial_checksum``
    leaves the TCP checksum to a device with checksum offload (see ``_encode``); ``headers_only`` returns the
    IP and TCP headers alone, for a caller that writes the payload beside them.
    """
    addresses = int.from_bytes(src + dst, "big")
    raw_options, offset_flags, tcp_length, checksum = _encode(seg, addresses, partial_checksum)
    try:
        if len(src) == 4 and len(dst) == 4:
            total_length = 20 + tcp_length
            if total_length > 0xFFFF:
                raise ValueError(f"IPv4 datagram of {total_length} bytes exceeds 65535")
            residue = (0x4500 + tos + total_length + _DF + (ttl << 8) + PROTO_TCP + addresses) % 0xFFFF
            header = _IPV4_TCP.pack(
                0x45,
                tos,
                total_length,
                0,
                _DF,
                ttl,
                PROTO_TCP,
                0xFFFF - residue if residue else 0,
                src,
                dst,
                seg.src_port,
                seg.dst_port,
                seg.seq,
                seg.ack,
                offset_flags,
                seg.window,
                checksum,
                seg.urgent,
            )
        elif len(src) == 16 and len(dst) == 16:
            if tcp_length > 0xFFFF:
                raise ValueError(f"TCP segment of {tcp_length} bytes needs a jumbogram, which we do not send")
            header = _IPV6_TCP.pack(
                0x60000000 | tos << 20,
                tcp_length,
                PROTO_TCP,
                ttl,
                src,
                dst,
                seg.src_port,
                seg.dst_port,
                seg.seq,
                seg.ack,
                offset_flags,
                seg.window,
                checksum,
                seg.urgent,
            )
        else:
            raise ValueError(f"addresses must both be 4 or 16 bytes, not {len(src)} and {len(dst)}")
    except struct.error as exc:
        raise ValueError(f"IP or TCP header field out of range: {exc}") from None
    if headers_only:
        return header + raw_options
    return header + raw_options + seg.payload
