"""Claims: which node owns a connection whose sequence numbers no longer say so (DESIGN.md §2, step 4).

A claim names a connection by its 4-tuple seen from the client side — (client address, client port, service
address, service port), the order of an arriving segment's (src, sport, dst, dport) — and maps it to the node that
owns it. Each node keeps the claims its peers announced, bounded per owner, with an order-free digest per owner
that heartbeats carry so two nodes can tell cheaply whether they agree.
"""

import hashlib
from collections.abc import Iterable

FourTuple = tuple[bytes, int, bytes, int]  # client address, client port, service address, service port

DEFAULT_MAX_CLAIMS = 65536  # per owner: the most connections one node may have claimed at once


def encode_tuple(key: FourTuple) -> bytes:
    """The wire form of a 4-tuple (docs/protocol.md): family, client address and port, service address and port."""
    client, client_port, service, service_port = key
    return (
        (b"\x04" if len(client) == 4 else b"\x06")
        + client
        + client_port.to_bytes(2, "big")
        + service
        + service_port.to_bytes(2, "big")
    )


def tuple_hash(key: FourTuple) -> int:
    """64 bits of BLAKE2b over the wire form; claim-set digests XOR these, so they are independent of order."""
    return int.from_bytes(hashlib.blake2b(encode_tuple(key), digest_size=8).digest(), "big")


class ClaimSet:
    """A set of 4-tuples with its size and XOR digest kept up to date in O(1) per change."""

    __slots__ = ("digest", "keys")

    def __init__(self, keys: Iterable[FourTuple] = ()) -> None:
        self.keys: set[FourTuple] = set()
        self.digest = 0
        for key in keys:
            self.add(key)

    def add(self, key: FourTuple) -> None:
        if key not in self.keys:
            self.keys.add(key)
            self.digest ^= tuple_hash(key)

    def discard(self, key: FourTuple) -> None:
        if key in self.keys:
            self.keys.remove(key)
            self.digest ^= tuple_hash(key)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def summary(self) -> tuple[int, int]:
        return len(self.keys), self.digest


class ClaimsTable:
    """The claims this node holds for its peers: 4-tuple -> owner, at most ``max_per_owner`` per owner.

    The bound matches the one every owner keeps on its own claims (``DEFAULT_MAX_CLAIMS``), so a peer configured
    like us never fills it. One that does — a misconfigured peer — has the claim refused: the caller then does not
    acknowledge it, so the owner's send fence stays up and its connection waits at the end of its slice rather
    than being misrouted (docs/anycast.md, "Bounds").
    """

    def __init__(self, max_per_owner: int = DEFAULT_MAX_CLAIMS) -> None:
        if max_per_owner < 1:
            raise ValueError(f"max_per_owner={max_per_owner} must be at least 1")
        self.max_per_owner = max_per_owner
        self._owner: dict[FourTuple, int] = {}
        self._by_owner: dict[int, ClaimSet] = {}

    def owner(self, key: FourTuple) -> int | None:
        return self._owner.get(key)

    def claim(self, owner: int, key: FourTuple) -> bool:
        """Record that ``owner`` owns ``key``; False if that owner's share is full (nothing changes)."""
        previous = self._owner.get(key)
        if previous == owner:
            return True
        claims = self._by_owner.setdefault(owner, ClaimSet())
        if len(claims) >= self.max_per_owner:
            return False
        if previous is not None:
            # The 4-tuple moved (its old owner's release is still on the way): the newest claim wins.
            self._by_owner[previous].discard(key)
        claims.add(key)
        self._owner[key] = owner
        return True

    def release(self, owner: int, key: FourTuple) -> None:
        if self._owner.get(key) == owner:
            del self._owner[key]
            self._by_owner[owner].discard(key)

    def replace(self, owner: int, keys: Iterable[FourTuple]) -> bool:
        """Make ``owner``'s claims exactly ``keys`` (a resync snapshot); False if they exceed the bound."""
        keys = set(keys)
        if len(keys) > self.max_per_owner:
            return False
        self.drop_owner(owner)
        for key in keys:
            self.claim(owner, key)
        return True

    def drop_owner(self, owner: int) -> set[FourTuple]:
        """Forget every claim of ``owner`` (it restarted or was declared dead); returns them."""
        claims = self._by_owner.pop(owner, None)
        if claims is None:
            return set()
        for key in claims.keys:
            if self._owner.get(key) == owner:
                del self._owner[key]
        return claims.keys

    def summary(self, owner: int) -> tuple[int, int]:
        """(count, digest) of ``owner``'s claims, as heartbeats carry them."""
        claims = self._by_owner.get(owner)
        return (0, 0) if claims is None else claims.summary()

    def owners(self) -> list[int]:
        return [owner for owner, claims in self._by_owner.items() if claims]

    def __len__(self) -> int:
        return len(self._owner)
