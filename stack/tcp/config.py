"""Per-connection tunables, each with its source. Validated once, so the hot path never re-checks them."""

from dataclasses import dataclass

from .congestion import ALGORITHMS
from .keepalive import KeepaliveSettings

# RFC 9293 §3.7.1 (MUST-15): "If an MSS Option is not received at connection setup, TCP implementations MUST
# assume a default send MSS of 536 (576 - 40) for IPv4 or 1220 (1280 - 60) for IPv6".
DEFAULT_SEND_MSS_V4 = 536
DEFAULT_SEND_MSS_V6 = 1220

KEEPALIVE_OFF = KeepaliveSettings()

MAX_UNSCALED_WINDOW = 0xFFFF  # RFC 9293 §3.1: the window field is 16 bits


@dataclass(frozen=True, slots=True)
class TcpConfig:
    # The MSS we advertise: what our receive path accepts (RFC 9293 §3.7.1, MUST-14). The host derives it
    # from the device MTU.
    mss: int = 1460
    send_buffer: int = 256 * 1024
    receive_buffer: int = 256 * 1024
    # Separate out-of-order blocks held at once. The window bounds their bytes, not their number: a peer (or a
    # blind attacker inside the window) sending one byte in every other position would make each its own block.
    # Beyond this, an out-of-order segment that starts a new block is dropped (the peer sends it again); Linux
    # bounds the same queue by memory (tcp_prune_ofo_queue).
    max_out_of_order_blocks: int = 1024
    # RFC 9293 §3.4.2 defines MSL as 2 minutes "for engineering purposes" (MUST-13 asks for 2·MSL in TIME-WAIT).
    # DEVIATION: Linux lingers 60 s in TIME-WAIT (TCP_TIMEWAIT_LEN); we default MSL to 30 s to match it.
    msl: float = 30.0
    # RFC 6298 (2.1): "Until a round-trip time (RTT) measurement has been made ... RTO <- 1 second".
    rto_initial: float = 1.0
    # DEVIATION: RFC 6298 (2.4) says RTO SHOULD be rounded up to 1 s; Linux uses 200 ms (TCP_RTO_MIN) and so
    # do we, since every peer we interoperate with does.
    rto_min: float = 0.2
    # RFC 6298 (2.5): "A maximum value MAY be placed on RTO provided it is at least 60 seconds."
    rto_max: float = 60.0
    # RFC 9293 §3.8.3 (MUST-20..23): R1 retransmissions before advising the IP layer; R2 seconds before giving
    # up. "R2 SHOULD correspond to at least 100 seconds"; for a SYN, "at least 3 minutes".
    r1: int = 3
    r2: float = 300.0
    syn_r2: float = 180.0
    # RFC 9293 §3.8.6.3 (SHLD-18, MUST-40): delay at most 0.5 s, ACK at least every second full-size segment.
    # Linux's minimum delayed-ACK timeout is 40 ms.
    delayed_ack: float = 0.04
    # RFC 6928 initial window of 10 segments (Linux's default since 2.6.39); RFC 5681 (3.1) gives 2 to 4.
    initial_window_segments: int = 10
    # Linux tcp_fin_timeout: an orphaned connection (closed by the application) waits at most this long in
    # FIN-WAIT-2 for the peer's FIN, since nobody could read what the peer sends anyway.
    fin_wait_2_timeout: float = 60.0
    # The congestion-control algorithm, by name (stack/tcp/congestion.py ALGORITHMS).
    congestion_control: str = "cubic"
    # Extensions offered in our SYN (or accepted in our SYN,ACK when the peer offers them).
    window_scaling: bool = True  # RFC 7323 §2
    timestamps: bool = True  # RFC 7323 §3-5: RTTM and PAWS
    sack: bool = True  # RFC 2018, with D-SACK (RFC 2883)
    # RFC 9293 §3.7.4 (MUST-17): the application can turn the Nagle algorithm off (Linux TCP_NODELAY).
    nodelay: bool = False
    keepalive: KeepaliveSettings = KEEPALIVE_OFF
    # RFC 9293 §3.9.1 USER TIMEOUT / RFC 5482: give up when sent data stays unacknowledged this long; it
    # replaces R2 for data when set (Linux TCP_USER_TIMEOUT).
    user_timeout: float | None = None
    # RFC 5961 §7: challenge ACKs per connection per second (Linux allows 1000 per second per namespace).
    challenge_acks_per_second: int = 100
    # RFC 1337 §3: TIME-WAIT ignores RST, so a stray reset (the peer answering an old duplicate) cannot cut the
    # 2*MSL short and let the next incarnation meet old segments. DEVIATION: Linux accepts the RST by default
    # (net.ipv4.tcp_rfc1337=0); FreeBSD ignores it. The anycast node needs this: its TIME-WAIT holds the claim.
    rfc1337: bool = True
    # RFC 9293 §3.9.1.9 (MUST-48): the Differentiated Services code point for this connection's segments.
    dscp: int = 0

    def __post_init__(self) -> None:
        if not 64 <= self.mss <= 65495:
            raise ValueError(f"mss={self.mss} is out of range: use a value between 64 and 65495")
        for name in ("send_buffer", "receive_buffer"):
            if getattr(self, name) < self.mss:
                raise ValueError(f"{name}={getattr(self, name)} is below mss={self.mss}: make it at least one segment")
        if self.msl <= 0:
            raise ValueError(f"msl={self.msl} must be positive (seconds)")
        if not 0 < self.rto_min <= self.rto_initial <= self.rto_max:
            raise ValueError("need 0 < rto_min <= rto_initial <= rto_max (seconds)")
        if self.r1 < 1 or self.r2 <= 0 or self.syn_r2 <= 0:
            raise ValueError("r1 must be >= 1 retransmission and r2, syn_r2 positive (seconds)")
        if not 0 < self.delayed_ack <= 0.5:
            raise ValueError(f"delayed_ack={self.delayed_ack} must be in (0, 0.5] seconds (RFC 9293 MUST-40)")
        if self.congestion_control not in ALGORITHMS:
            raise ValueError(
                f"congestion_control={self.congestion_control!r} is unknown: choose one of {sorted(ALGORITHMS)}"
            )
        if self.user_timeout is not None and self.user_timeout <= 0:
            raise ValueError(f"user_timeout={self.user_timeout} must be positive (seconds) or None")
        if not 0 <= self.dscp <= 63:
            raise ValueError(f"dscp={self.dscp} is out of range: use 0-63 (RFC 2474), e.g. 46 for EF")
        if self.max_out_of_order_blocks < 1:
            raise ValueError("max_out_of_order_blocks must be at least 1")
        if self.challenge_acks_per_second < 1:
            raise ValueError("challenge_acks_per_second must be at least 1")
        if self.initial_window_segments < 1:
            raise ValueError("initial_window_segments must be at least 1")

    @property
    def receive_window_scale(self) -> int:
        """RFC 7323 §2.3: the smallest shift that lets the 16-bit window field cover the receive buffer (max 14)."""
        if not self.window_scaling:
            return 0
        shift = 0
        while shift < 14 and MAX_UNSCALED_WINDOW << shift < self.receive_buffer:
            shift += 1
        return shift
