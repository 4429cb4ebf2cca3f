"""Prometheus metrics for a node, built from ``snapshot()`` at scrape time and served on the event loop.

Nothing is counted here: the stack, the node and the devices already keep every number as a plain int, and
``SnapshotCollector`` turns one snapshot into metric families when Prometheus asks. So metrics cost nothing per
packet, and a series can never drift from what ``anycast-tcp status`` shows.

prometheus-client's own HTTP server runs in a thread, and the stack's dicts must only be read on the event loop's
thread; ``start_metrics_server`` is a small HTTP/1.1 server on the loop instead (kernel TCP, not our stack: the
metrics must stay reachable when the data path is in trouble).
"""

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

log = structlog.get_logger("appliance.metrics")

PREFIX = "anycast_tcp_"
MAX_REQUEST = 8192  # request line and headers; a scraper sends a few hundred bytes
REQUEST_TIMEOUT = 5.0  # to read the request and write the answer: a stalled client holds nothing for long
LINGER_READS = 16  # after refusing an oversized request: how many more buffers of it to read and discard
LIVENESS_VALUE = {"alive": 1, "dead": 0, "unknown": -1}


class SnapshotCollector(Collector):
    """Metric families from ``collect()`` (a snapshot dict), called once per scrape."""

    def __init__(self, collect: Callable[[], dict]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        s = self._collect()
        yield from _node(s)
        yield from _connections(s)
        yield from _anycast(s)
        yield from _drops(s)
        yield from _devices(s)


def _counter(name: str, doc: str, value: float | None = None, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value, labels=labels or None)


def _gauge(name: str, doc: str, value: float | None = None, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels or None)


def _by(family, label_values: dict[str, float], *fixed: str):
    for key, value in label_values.items():
        family.add_metric([*fixed, str(key)], value)
    return family


def _node(s: dict) -> Iterator[Metric]:
    info = {"node": _text(s["node"]), "incarnation": _text(s["incarnation"]), "anycast": str(s["anycast"]).lower()}
    yield InfoMetricFamily(PREFIX + "node", "This node's id and incarnation (empty without a cluster).", value=info)
    yield _gauge("start_time_seconds", "When the node started, in seconds since the Unix epoch.", s["started_at"])
    yield _gauge("uptime_seconds", "Seconds since the node started.", s["uptime"])


def _text(value) -> str:
    return "" if value is None else str(value)


def _connections(s: dict) -> Iterator[Metric]:
    conns, segments = s["connections"], s["segments"]
    yield _by(
        _gauge("connections", "Connections in the table, by RFC 9293 state.", labels=("state",)), conns["by_state"]
    )
    yield _gauge("listeners", "Listening sockets.", conns["listeners"])
    yield _counter(
        "segments_received", "IP packets taken by the TCP host (the TUN's and those forwarded in).", segments["in"]
    )
    yield _counter("segments_sent", "IP packets the TCP host sent out through the TUN.", segments["out"])
    yield _counter("retransmitted_segments", "Segments retransmitted, by every connection.", segments["retransmitted"])


def _anycast(s: dict) -> Iterator[Metric]:
    fwd, claims = s["forwarding"], s["claims"]
    yield _by(
        _counter(
            "classified_segments", "Segments no connection took, by the classifier's outcome.", labels=("outcome",)
        ),
        fwd["by_outcome"],
    )
    yield _by(
        _counter("forwarded_packets", "Segments forwarded to (out) and from (in) peers.", labels=("direction",)),
        {"out": fwd["out"], "in": fwd["in"]},
    )
    yield _counter(
        "flooded_copies", "Copies of flooded segments sent to peers (included in forwarded out).", fwd["flooded_copies"]
    )
    yield _gauge("claims_own", "Connections this node has claimed.", claims["own"])
    yield _gauge("claims_held", "Claims of peers this node holds.", claims["held"])
    yield _gauge("claims_acknowledged", "Own claims every live peer has acknowledged.", claims["acknowledged"])
    yield _counter("claims_announced", "Claims this node has made.", claims["announced"])
    yield _counter("claims_released", "Claims this node has released.", claims["released"])
    yield _by(
        _gauge(
            "claim_ack_seconds", "Recent claim round trips until every live peer acknowledged.", labels=("quantile",)
        ),
        claims["ack_seconds"],
    )
    peer_up = _gauge("peer_up", "Peer liveness: 1 alive, 0 dead, -1 not heard from yet.", labels=("peer", "address"))
    for peer_id, peer in s["peers"].items():
        peer_up.add_metric([peer_id, peer["address"]], LIVENESS_VALUE.get(peer["liveness"], -1))
    yield peer_up
    yield _by(_counter("control_events", "Control-plane events of the node.", labels=("event",)), s["control"])


def _drops(s: dict) -> Iterator[Metric]:
    drops = _counter("drops", "Input dropped, by where (host, tunnel, node) and reason.", labels=("where", "reason"))
    for where, reasons in s["drops"].items():
        _by(drops, reasons, where)
    yield drops


def _devices(s: dict) -> Iterator[Metric]:
    tun, sock = s["tun"], s["peer_socket"]
    yield _counter("tun_read_batches", "TUN reads that returned at least one packet.", tun["read_batches"])
    yield _by(
        _counter("tun_packets", "Packets through the TUN device.", labels=("direction",)),
        {"in": tun["packets_in"], "out": tun["packets_out"]},
    )
    yield _by(
        _counter("tun_bytes", "Bytes through the TUN device.", labels=("direction",)),
        {"in": tun["bytes_in"], "out": tun["bytes_out"]},
    )
    yield _by(
        _counter("tun_write_failures", "Packets the TUN device did not take, by kind.", labels=("kind",)),
        {"drop": tun["write_drops"], "error": tun["write_errors"]},
    )
    yield _by(
        _counter("peer_socket_datagrams", "Datagrams through the peer socket.", labels=("direction",)),
        {"in": sock["datagrams_in"], "out": sock["datagrams_out"]},
    )
    yield _by(
        _counter("peer_socket_bytes", "Bytes through the peer socket.", labels=("direction",)),
        {"in": sock["bytes_in"], "out": sock["bytes_out"]},
    )
    yield _by(
        _counter("peer_socket_errors", "Peer socket calls that failed, by operation.", labels=("op",)),
        {"send": sock["send_errors"], "receive": sock["receive_errors"]},
    )


def registry_for(collect: Callable[[], dict]) -> CollectorRegistry:
    """A private registry holding only this node's collector: no process-wide default registry, so two nodes in
    one process (tests, an embedding application) never mix their series."""
    registry = CollectorRegistry(auto_describe=False)  # do not call collect() at registration
    registry.register(SnapshotCollector(collect))
    return registry


async def start_metrics_server(host: str, port: int, collect: Callable[[], dict]) -> asyncio.AbstractServer:
    """Serve ``GET /metrics`` on kernel TCP ``host:port`` from the running loop. One request per connection."""
    registry = registry_for(collect)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await _serve_one(reader, writer, registry)
        except (TimeoutError, ConnectionError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # ``limit`` bounds what readuntil() buffers: a longer head raises instead of growing without end.
    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST)


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, registry: CollectorRegistry) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        await _respond(writer, 431, "Request Header Fields Too Large")
        await _discard_rest(reader, writer)
        return
    except asyncio.IncompleteReadError:
        return  # closed before a whole request
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        await _respond(writer, 400, "Bad Request")
        return
    method, target = parts[0], parts[1]
    if method != b"GET":
        await _respond(writer, 405, "Method Not Allowed", extra=b"Allow: GET\r\n")
        return
    if target.split(b"?", 1)[0] != b"/metrics":
        await _respond(writer, 404, "Not Found", b"try /metrics\n")
        return
    try:
        body = generate_latest(registry)
    except Exception:
        log.exception("metrics.collect_failed")
        await _respond(writer, 500, "Internal Server Error")
        return
    await _respond(writer, 200, "OK", body, content_type=CONTENT_TYPE_LATEST)


async def _discard_rest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read what the client still sends, up to its EOF or a bound: closing with unread input
    makes the kernel send a RST, which can destroy our answer before the client reads it. The caller's timeout
    bounds the wait."""
    writer.write_eof()
    for _ in range(LINGER_READS):
        if not await reader.read(MAX_REQUEST):
            return


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    body: bytes | None = None,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: bytes = b"",
) -> None:
    if body is None:
        body = f"{status} {reason}\n".encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n"
    ).encode()
    writer.write(head + extra + b"\r\n" + body)
    await writer.drain()
