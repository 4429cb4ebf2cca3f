"""Control messages between nodes: claim/release batches, their acknowledgments, and heartbeats.

They ride the authenticated tunnel as GUE control payloads (docs/protocol.md, "Control messages"). Every field is
big-endian. Decoding never raises for bad bytes: it returns None and the caller counts the drop. The tunnel
authenticates the sender only, so every message names its receiver: one redirected to another node is refused.

    batch      type=1 u8 | 0 u8 | count u16 | receiver u16 | 0 u16 | epoch u32 | seq u32 | count ops
    ack        type=2 u8 | 0 u8 | 0 u16     | receiver u16 | 0 u16 | epoch u32 | seq u32
    heartbeat  type=3 u8 | 0 u8 | count u16 | receiver u16 | 0 u16 | count digests
    digest     owner u16 | 0 u16 | claims u32 | digest u64   (claims held for that owner, and their XOR digest)

    op: CLAIM=1 | RELEASE=2, then a 4-tuple (claims.encode_tuple); SNAPSHOT_BEGIN=3 | SNAPSHOT_END=4, no body.
"""

import enum
import struct
from dataclasses import dataclass

from .claims import FourTuple, encode_tuple

BATCH, ACK, HEARTBEAT = 1, 2, 3
_HEAD = struct.Struct("!BBHHHII")
_HEARTBEAT_HEAD = struct.Struct("!BBHHH")
_DIGEST = struct.Struct("!HHIQ")
_PORT = struct.Struct("!H")

# A batch must fit one datagram on any underlay: IPv6's minimum MTU (1280) less the 92 bytes of outer IPv6, UDP
# and GUE headers leaves 1188; stay under it.
MAX_BATCH_BYTES = 1180


class Op(enum.IntEnum):
    CLAIM = 1
    RELEASE = 2
    SNAPSHOT_BEGIN = 3  # everything claimed up to SNAPSHOT_END replaces what the receiver holds for the sender
    SNAPSHOT_END = 4


Entry = tuple[Op, FourTuple | None]


@dataclass(frozen=True, slots=True)
class Batch:
    receiver: int
    epoch: int
    seq: int
    ops: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    receiver: int
    epoch: int
    seq: int  # every batch of ``epoch`` up to and including ``seq`` has been applied


@dataclass(frozen=True, slots=True)
class Heartbeat:
    receiver: int
    digests: tuple[tuple[int, int, int], ...]  # (owner, number of claims held for it, XOR digest)


Message = Batch | Ack | Heartbeat


def op_size(entry: Entry) -> int:
    key = entry[1]
    return 1 if key is None else 1 + 1 + 2 * len(key[0]) + 4


def encode_batch(batch: Batch) -> bytes:
    parts = [_HEAD.pack(BATCH, 0, len(batch.ops), batch.receiver, 0, batch.epoch, batch.seq)]
    for op, key in batch.ops:
        parts.append(bytes((op,)))
        if key is not None:
            parts.append(encode_tuple(key))
    return b"".join(parts)


def encode_ack(ack: Ack) -> bytes:
    return _HEAD.pack(ACK, 0, 0, ack.receiver, 0, ack.epoch, ack.seq)


def encode_heartbeat(heartbeat: Heartbeat) -> bytes:
    head = _HEARTBEAT_HEAD.pack(HEARTBEAT, 0, len(heartbeat.digests), heartbeat.receiver, 0)
    return head + b"".join(_DIGEST.pack(owner, 0, count, digest) for owner, count, digest in heartbeat.digests)


def decode(data: bytes) -> Message | None:
    """One control message, or None if the bytes are not exactly one well-formed message."""
    if len(data) < _HEARTBEAT_HEAD.size:
        return None
    kind, flags, count, receiver, reserved = _HEARTBEAT_HEAD.unpack_from(data)
    if flags or reserved or receiver == 0:
        return None
    if kind == HEARTBEAT:
        start = _HEARTBEAT_HEAD.size
        if len(data) != start + count * _DIGEST.size:
            return None
        digests = []
        for i in range(count):
            owner, zero, claims, digest = _DIGEST.unpack_from(data, start + i * _DIGEST.size)
            if zero or owner == 0:
                return None
            digests.append((owner, claims, digest))
        return Heartbeat(receiver, tuple(digests))
    if len(data) < _HEAD.size:
        return None
    epoch, seq = _HEAD.unpack_from(data)[5:]
    if kind == ACK:
        return Ack(receiver, epoch, seq) if len(data) == _HEAD.size and count == 0 else None
    if kind != BATCH or seq == 0:
        return None
    ops = _decode_ops(data, _HEAD.size, count)
    return None if ops is None else Batch(receiver, epoch, seq, ops)


def _decode_ops(data: bytes, offset: int, count: int) -> tuple[Entry, ...] | None:
    ops: list[Entry] = []
    end = len(data)
    for _ in range(count):
        if offset >= end:
            return None
        code = data[offset]
        offset += 1
        if code in (Op.SNAPSHOT_BEGIN, Op.SNAPSHOT_END):
            ops.append((Op(code), None))
            continue
        if code not in (Op.CLAIM, Op.RELEASE) or offset >= end:
            return None
        family = data[offset]
        size = 4 if family == 4 else 16 if family == 6 else 0
        if not size or offset + 1 + 2 * size + 4 > end:
            return None
        offset += 1
        client = data[offset : offset + size]
        (client_port,) = _PORT.unpack_from(data, offset + size)
        offset += size + 2
        service = data[offset : offset + size]
        (service_port,) = _PORT.unpack_from(data, offset + size)
        offset += size + 2
        ops.append((Op(code), (client, client_port, service, service_port)))
    return tuple(ops) if offset == end else None
