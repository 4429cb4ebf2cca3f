"""smoltcp-style harness: build a connection in a given state, deliver segments, expect exact segments back.

The peer's ISN sits just below 2**32 so every test that moves data crosses the sequence-number wrap.
"""

from stack.seq import seq_add
from stack.tcp.config import TcpConfig
from stack.tcp.connection import Connection
from stack.tcp.state import State
from stack.wire import ACK, FIN, NO_OPTIONS, SYN, TcpOptions, TcpSegment

LOCAL_ADDR = bytes([192, 0, 2, 1])
REMOTE_ADDR = bytes([198, 51, 100, 7])
LOCAL_PORT = 80
REMOTE_PORT = 49500
LOCAL_ISS = 10_000
REMOTE_ISS = (1 << 32) - 5  # data from the peer wraps after four bytes
MSS = 1460
# The classic RFC 9293 segments: the extensions are tested on their own (test_extensions.py).
CONFIG = TcpConfig(
    mss=MSS, receive_buffer=64 * 1024, send_buffer=64 * 1024, window_scaling=False, timestamps=False, sack=False
)
WINDOW = 0xFFFF  # our 64 KiB receive buffer, capped to the unscaled 16-bit window field
PEER_WINDOW = 32_768


def local_seq(n: int) -> int:
    """Our sequence number ``n`` past the ISS."""
    return seq_add(LOCAL_ISS, n)


def remote_seq(n: int) -> int:
    return seq_add(REMOTE_ISS, n)


def seg(
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    window: int = PEER_WINDOW,
    payload: bytes = b"",
    options: TcpOptions = NO_OPTIONS,
) -> TcpSegment:
    """A segment from the peer to us."""
    return TcpSegment(REMOTE_PORT, LOCAL_PORT, seq, ack, flags, window, payload, options)


def ours(
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    window: int = WINDOW,
    payload: bytes = b"",
    options: TcpOptions = NO_OPTIONS,
) -> TcpSegment:
    """A segment from us to the peer."""
    return TcpSegment(LOCAL_PORT, REMOTE_PORT, seq, ack, flags, window, payload, options)


def new_connection(config: TcpConfig = CONFIG) -> Connection:
    return Connection(LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT, LOCAL_ISS, config)


def deliver(conn: Connection, segment: TcpSegment, now: float = 0.0) -> None:
    conn.receive_segment(segment, now)


def expect(conn: Connection, *expected: TcpSegment, now: float = 0.0) -> None:
    got = conn.segments_to_send(now)
    assert got == list(expected), f"\n got: {got}\nwant: {list(expected)}"


def expect_nothing(conn: Connection, now: float = 0.0) -> None:
    expect(conn, now=now)


def events(conn: Connection) -> list:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


# --- connections in each state -----------------------------------------------------------------------------


def syn_sent(config: TcpConfig = CONFIG) -> Connection:
    conn = new_connection(config)
    conn.connect(0.0)
    expect(conn, ours(LOCAL_ISS, 0, SYN, options=TcpOptions(mss=config.mss)))
    return conn


def syn_received(config: TcpConfig = CONFIG) -> Connection:
    conn = new_connection(config)
    conn.listen()
    deliver(conn, seg(REMOTE_ISS, 0, SYN, options=TcpOptions(mss=MSS)))
    window = min(config.receive_buffer, 0xFFFF)
    expect(conn, ours(LOCAL_ISS, remote_seq(1), SYN | ACK, window=window, options=TcpOptions(mss=config.mss)))
    assert conn.state is State.SYN_RECEIVED
    return conn


def established(config: TcpConfig = CONFIG) -> Connection:
    conn = syn_received(config)
    deliver(conn, seg(remote_seq(1), local_seq(1)))
    expect_nothing(conn)
    assert conn.state is State.ESTABLISHED
    events(conn)
    return conn


def fin_wait_1(config: TcpConfig = CONFIG) -> Connection:
    conn = established(config)
    conn.shutdown_write(0.0)
    expect(conn, ours(local_seq(1), remote_seq(1), ACK | FIN))
    assert conn.state is State.FIN_WAIT_1
    return conn


def fin_wait_2(config: TcpConfig = CONFIG) -> Connection:
    conn = fin_wait_1(config)
    deliver(conn, seg(remote_seq(1), local_seq(2)))
    expect_nothing(conn)
    assert conn.state is State.FIN_WAIT_2
    return conn


def close_wait() -> Connection:
    conn = established()
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK | FIN))
    expect(conn, ours(local_seq(1), remote_seq(2)))
    assert conn.state is State.CLOSE_WAIT
    events(conn)
    return conn


def last_ack() -> Connection:
    conn = close_wait()
    conn.shutdown_write(0.0)
    expect(conn, ours(local_seq(1), remote_seq(2), ACK | FIN))
    assert conn.state is State.LAST_ACK
    return conn


def closing() -> Connection:
    conn = fin_wait_1()
    deliver(conn, seg(remote_seq(1), local_seq(1), ACK | FIN))
    expect(conn, ours(local_seq(2), remote_seq(2)))
    assert conn.state is State.CLOSING
    return conn


def time_wait(config: TcpConfig = CONFIG) -> Connection:
    conn = fin_wait_2(config)
    deliver(conn, seg(remote_seq(1), local_seq(2), ACK | FIN))
    expect(conn, ours(local_seq(2), remote_seq(2)))
    assert conn.state is State.TIME_WAIT
    return conn
