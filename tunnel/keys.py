"""Cluster keys: the shared secrets that authenticate the tunnel between nodes, and the file that holds them.

The key file is UTF-8 text. Blank lines and lines starting with ``#`` are ignored; every other line is
``<key id> <key hex>``, a key id from 0 to 255 and a key of exactly 32 bytes (64 hex digits). The first key line
is the one this node sends with; every listed key is accepted on receive. At most two keys are listed, so a key
rotates in three reloads without a flag day (docs/protocol.md, "Key file and rotation"):

1. every node lists ``old`` then ``new`` (still sends with old, already accepts new);
2. every node lists ``new`` then ``old`` (sends with new, still accepts old from nodes not yet reloaded);
3. every node lists ``new`` alone.
"""

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

KEY_LEN = 32  # 256-bit keys; BLAKE2b takes keys of up to 64 bytes (RFC 7693 §2.1)
KEY_ID_MAX = 255  # one byte on the wire (docs/protocol.md, private data offset 2)
MAX_KEYS = 2  # the key in use and the one rotating in or out
KEYGEN_HINT = "generate one with `anycast-tcp keygen`"

_KEY_ID = re.compile(r"[0-9]{1,3}")
_KEY_HEX = re.compile(r"[0-9A-Fa-f]{64}")


@dataclass(frozen=True, slots=True, repr=False)
class ClusterKeys:
    """The keys a node holds: ``send_id`` names the key it seals with; all of ``keys`` open."""

    send_id: int
    keys: Mapping[int, bytes]

    def __post_init__(self) -> None:
        keys = dict(self.keys)
        if not 1 <= len(keys) <= MAX_KEYS:
            raise ValueError(
                f"cluster keys must hold 1 or {MAX_KEYS} keys (current, and next or previous), got {len(keys)}"
            )
        for key_id, key in keys.items():
            if not isinstance(key_id, int) or isinstance(key_id, bool) or not 0 <= key_id <= KEY_ID_MAX:
                raise ValueError(f"key id {key_id!r} must be a whole number from 0 to {KEY_ID_MAX}")
            if not isinstance(key, bytes) or len(key) != KEY_LEN:
                raise ValueError(f"key {key_id} must be {KEY_LEN} bytes; {KEYGEN_HINT}")
        if self.send_id not in keys:
            raise ValueError(f"send key id {self.send_id!r} is not among the key ids {sorted(keys)}: list its key")
        object.__setattr__(self, "keys", MappingProxyType(keys))

    def __repr__(self) -> str:
        # Never the key bytes: this object ends up in logs and tracebacks.
        return f"ClusterKeys(send_id={self.send_id}, key_ids={sorted(self.keys)})"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ClusterKeys":
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                raw = f.read()
        except OSError as exc:
            raise ValueError(
                f"{source}: cannot read the cluster key file ({exc.strerror}); create it with "
                f"`(umask 077; anycast-tcp keygen > {source})` and copy it to every node"
            ) from None
        if mode & 0o077:
            # Whoever reads the key can forge tunnel datagrams into any connection of the cluster (as ssh does
            # for private keys, refuse rather than warn).
            raise ValueError(
                f"{source}: the cluster key file is open to other users (mode {stat.S_IMODE(mode):04o}); "
                f"anyone who reads it can inject into the tunnel: run `chmod 600 {source}`"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{source}: not UTF-8 text (byte {exc.start}); write `<key id> <key hex>` lines, {KEYGEN_HINT}"
            ) from None
        return cls.parse(text, source=source)

    @classmethod
    def parse(cls, text: str, source: str = "cluster key file") -> "ClusterKeys":
        keys: dict[int, bytes] = {}
        first_line: dict[int, int] = {}
        send_id: int | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source} line {number}"
            fields = line.split()
            if len(fields) != 2:
                got = "one field" if len(fields) == 1 else f"{len(fields)} (a comment goes on a line of its own)"
                raise ValueError(f"{where}: expected `<key id> <key hex>`, got {got}; {KEYGEN_HINT}")
            id_text, key_text = fields
            if not _KEY_ID.fullmatch(id_text) or int(id_text) > KEY_ID_MAX:
                raise ValueError(f"{where}: key id {id_text!r} must be a whole number from 0 to {KEY_ID_MAX}")
            key_id = int(id_text)
            if not _KEY_HEX.fullmatch(key_text):
                raise ValueError(
                    f"{where}: key must be {2 * KEY_LEN} hex digits ({KEY_LEN} bytes), got {len(key_text)} "
                    f"characters; {KEYGEN_HINT}"
                )
            if key_id in keys:
                raise ValueError(
                    f"{where}: key id {key_id} is listed twice (first on line {first_line[key_id]}); "
                    "give each key its own id"
                )
            if len(keys) == MAX_KEYS:
                raise ValueError(
                    f"{where}: a third key; list at most {MAX_KEYS} (the one to send with first, then the one "
                    "rotating in or out): remove the retired key"
                )
            keys[key_id] = bytes.fromhex(key_text)
            first_line[key_id] = number
            if send_id is None:
                send_id = key_id
        if send_id is None:
            raise ValueError(f"{source}: no keys; add a line `<key id> <key hex>`, {KEYGEN_HINT}")
        return cls(send_id, keys)


def generate_key_line(key_id: int = 1) -> str:
    """A fresh key file line, ``<key id> <64 hex digits>``, from the operating system's CSPRNG."""
    if not isinstance(key_id, int) or isinstance(key_id, bool) or not 0 <= key_id <= KEY_ID_MAX:
        raise ValueError(f"key id {key_id!r} must be a whole number from 0 to {KEY_ID_MAX}")
    return f"{key_id} {os.urandom(KEY_LEN).hex()}"
