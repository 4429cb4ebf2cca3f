"""Initial sequence numbers per RFC 6528 (RFC 9293 §3.4.1, MUST-8, MUST-9).

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), with M a 4 µs clock and F a keyed hash. The
key is injected (the runtime reads it from the OS), so the core stays deterministic under test.
"""

import hashlib
import struct
from typing import Protocol

from ..seq import SEQ_MASK

# RFC 9293 §3.4.1 (MUST-8): "a clock-driven scheme ... the 32-bit clock whose low-order bit is incremented
# roughly every 4 microseconds".
CLOCK_TICKS_PER_SECOND = 250_000
_PORTS = struct.Struct("!HH")


class IsnSource(Protocol):
    def __call__(self, local_addr: bytes, local_port: int, remote_addr: bytes, remote_port: int, now: float) -> int:
        """The ISN for a new connection on this 4-tuple at time ``now``."""


class Rfc6528Isn:
    """The default ISN source."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the ISN secret must be at least 16 bytes (RFC 6528 §3): read it from os.urandom")
        self._key = hashlib.blake2s(secret).digest()

    def offset(self, local_addr: bytes, local_port: int, remote_addr: bytes, remote_port: int) -> int:
        """F(): RFC 6528 §3 "MUST NOT be computable from the outside"; keyed BLAKE2s over the 4-tuple."""
        h = hashlib.blake2s(
            local_addr + remote_addr + _PORTS.pack(local_port, remote_port), key=self._key, digest_size=4
        )
        return int.from_bytes(h.digest(), "big")

    def __call__(self, local_addr: bytes, local_port: int, remote_addr: bytes, remote_port: int, now: float) -> int:
        m = int(now * CLOCK_TICKS_PER_SECOND)
        return (m + self.offset(local_addr, local_port, remote_addr, remote_port)) & SEQ_MASK
