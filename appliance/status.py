"""The node's local control socket, read by ``anycast-tcp status``.

A Unix stream socket: every connection gets one JSON line (the node's snapshot) and is closed. Nothing is read
from the client, so there is no request to parse and nothing to get wrong; who may ask is the socket file's
mode and group (0660). The server runs on the node's event loop, where the snapshot may safely be taken.
"""

import asyncio
import contextlib
import errno
import json
import os
import socket
import stat
from collections.abc import Callable

import structlog

log = structlog.get_logger("appliance.status")

DIR_MODE = 0o755
SOCKET_MODE = 0o660  # owner and group may ask; others may not even connect
MAX_PATH = 107  # sun_path is 108 bytes on Linux, with the terminating NUL
LIVE_CHECK_TIMEOUT = 1.0  # is a node already answering on the path?
WRITE_TIMEOUT = 5.0
MAX_STATUS = 16 << 20  # a status is a few KiB; more than this is not one
HINT = "is the node running? give --socket or --config"


class StatusError(RuntimeError):
    """No status could be had from the socket; the message names the path and what to do."""


async def start_status_server(path: str, collect: Callable[[], dict]) -> asyncio.AbstractServer:
    """Listen on the Unix socket ``path``, answering each connection with ``collect()`` as one JSON line.

    A socket file left by a node that died is replaced; one on which a node still answers is refused, as is a
    path that exists but is no socket (it is not ours to delete)."""
    _check_length(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
    await _clear_stale(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = json.dumps(collect(), separators=(",", ":"), sort_keys=True) + "\n"
            writer.write(line.encode())
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # the client stopped reading or went away
        except Exception:
            log.exception("status.collect_failed", path=path)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()  # the file, if any, is someone else's
        raise
    try:
        # Set the mode before listen(): until then a connection is refused, so no client ever meets a socket
        # with the umask's mode.
        os.chmod(path, SOCKET_MODE)
        return await asyncio.start_unix_server(handle, sock=sock)
    except BaseException:
        sock.close()
        remove_socket(path)
        raise


def _check_length(path: str) -> None:
    size = len(os.fsencode(path))
    if size > MAX_PATH:
        raise ValueError(
            f"control socket path {path} is {size} bytes; a Unix socket path must be at most {MAX_PATH}: "
            "choose a shorter node.control_socket"
        )


async def _clear_stale(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(
            errno.EEXIST, f"{path} exists and is not a socket: move it away or choose another node.control_socket"
        )
    try:
        async with asyncio.timeout(LIVE_CHECK_TIMEOUT):
            _, writer = await asyncio.open_unix_connection(path)
    except (ConnectionRefusedError, FileNotFoundError):
        # Nobody listens: the file is what a node that died (or was killed) left behind.
        log.info("status.stale_socket_removed", path=path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except TimeoutError:
        pass  # something holds it and is too busy to answer: still not ours to take
    else:
        writer.close()
    raise OSError(
        errno.EADDRINUSE,
        f"another node answers on {path}: stop it, or give this node its own node.control_socket",
    )


def remove_socket(path: str) -> None:
    """At shutdown: remove the socket file, if it is still a socket (never a file someone put there since)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        # A node that dropped privileges (node.user) without write access to the socket's directory.
        log.warning("status.socket_left", path=path, fix="give node.user write access to its directory")


def query(path: str, timeout: float = 2.0) -> dict:
    """The status of the node listening on ``path``; a ``StatusError`` naming the path and the fix if none does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            data = _read_all(sock, path)
        except FileNotFoundError:
            raise StatusError(f"no control socket at {path}: {HINT}") from None
        except ConnectionRefusedError:
            raise StatusError(f"nothing answers on {path} (left by a node that stopped?): {HINT}") from None
        except PermissionError:
            raise StatusError(f"not allowed to open {path}: run as root or as a member of its group") from None
        except TimeoutError:
            raise StatusError(f"the node on {path} did not answer within {timeout:g} s: it may be overloaded") from None
        except OSError as exc:
            raise StatusError(f"cannot read a status from {path}: {exc.strerror or exc}: {HINT}") from None
    try:
        status = json.loads(data)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        raise StatusError(f"{path} answered something that is not a node's status: is it an anycast-tcp socket?")
    return status


def _read_all(sock: socket.socket, path: str) -> bytes:
    chunks, size = [], 0
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_STATUS:
            raise StatusError(f"{path} sent more than {MAX_STATUS} bytes: not a node's status")
    return b"".join(chunks)


def render(status: dict) -> str:
    """A terminal view of ``status``. Tolerant of missing keys, so a newer CLI can read an older node."""
    out: list[str] = []
    anycast = status.get("anycast", False)
    if anycast:
        head = f"node {status.get('node')} (incarnation {status.get('incarnation')}), anycast"
    else:
        head = "plain node (no cluster)"
    out.append(f"{head}, up {_duration(status.get('uptime', 0.0))}")
    services = [s.get("describe") or " ".join(str(v) for v in s.values()) for s in status.get("services", [])]
    out += _table(
        [("addresses", ", ".join(status.get("addresses", [])) or "-"), ("services", ", ".join(services) or "-")]
    )

    conns, segments = status.get("connections", {}), status.get("segments", {})
    out += ["", f"connections  {conns.get('total', 0)} in the table, {conns.get('listeners', 0)} listening"]
    out += _table(_nonzero(conns.get("by_state", {})), indent=2)
    out += [
        "",
        f"segments     in {segments.get('in', 0)}  out {segments.get('out', 0)}  "
        f"retransmitted {segments.get('retransmitted', 0)}",
    ]

    if anycast:
        out += ["", "peers"]
        peers = status.get("peers", {})
        out += _table([(pid, p.get("liveness", "?"), p.get("address", "?")) for pid, p in peers.items()], indent=2)
        out += ["  (none)"] if not peers else []
        claims = status.get("claims", {})
        out += [
            "",
            f"claims       own {claims.get('own', 0)} ({claims.get('acknowledged', 0)} acknowledged)  "
            f"held {claims.get('held', 0)}  announced {claims.get('announced', 0)}  "
            f"released {claims.get('released', 0)}",
        ]
        ack = claims.get("ack_seconds", {})
        if ack:
            times = "  ".join(f"{_quantile_name(q)} {t * 1000:.1f} ms" for q, t in ack.items())
            out.append(f"             acknowledged within: {times}")
        fwd = status.get("forwarding", {})
        out += ["", f"forwarding   out {fwd.get('out', 0)}  in {fwd.get('in', 0)}"]
        out += _table(_nonzero(fwd.get("by_outcome", {})), indent=2) or ["  (nothing classified yet)"]
        control = _nonzero(status.get("control", {}))
        if control:
            out += ["", "control", *_table(control, indent=2)]

    drops = [(where, reason, n) for where, reasons in status.get("drops", {}).items() for reason, n in reasons.items()]
    drops = [row for row in drops if row[2]]
    out += ["", "drops", *(_table(drops, indent=2) or ["  (none)"])]

    tun, sock = status.get("tun", {}), status.get("peer_socket", {})
    out += [
        "",
        f"tun          packets {_pair(tun, 'packets')}  bytes {_pair(tun, 'bytes')}  "
        f"read batches {tun.get('read_batches', 0)}  write drops {tun.get('write_drops', 0)}  "
        f"write errors {tun.get('write_errors', 0)}",
    ]
    if anycast:
        out.append(
            f"peer socket  datagrams {_pair(sock, 'datagrams')}  bytes {_pair(sock, 'bytes')}  "
            f"send errors {sock.get('send_errors', 0)}  receive errors {sock.get('receive_errors', 0)}"
        )
        if sock.get("last_send_error"):
            out.append(f"             last send error: {sock['last_send_error']}")
    return "\n".join(out)


def _nonzero(counts: dict) -> list[tuple]:
    return [(name, n) for name, n in counts.items() if n]


def _pair(stats: dict, what: str) -> str:
    return f"{stats.get(what + '_in', 0)} in / {stats.get(what + '_out', 0)} out"


def _quantile_name(q: str) -> str:
    return {"0.5": "p50", "0.99": "p99", "1.0": "max"}.get(q, f"q{q}")


def _table(rows: list[tuple], indent: int = 0) -> list[str]:
    """Rows as aligned columns: numbers to the right, text to the left."""
    if not rows:
        return []
    cells = [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells)))]
    lines = []
    for row, values in zip(cells, rows):
        parts = [
            text.rjust(widths[i]) if isinstance(value, int | float) else text.ljust(widths[i])
            for i, (text, value) in enumerate(zip(row, values))
        ]
        lines.append(" " * indent + "  ".join(parts).rstrip())
    return lines


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    clock = f"{hours}h {minutes:02d}m {seconds:02d}s" if hours or days else f"{minutes}m {seconds:02d}s"
    return f"{days}d {clock}" if days else clock
