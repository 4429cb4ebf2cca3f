"""Per-connection statistics an operator can read, after Linux's ``struct tcp_info``."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection


@dataclass(frozen=True, slots=True)
class TcpInfo:
    state: str
    congestion_control: str
    recovery: str  # "open", "recovery" (fast recovery) or "loss" (after a retransmission timeout)
    rtt: float | None  # smoothed RTT (RFC 6298 SRTT), seconds
    rttvar: float | None
    rto: float
    min_rtt: float | None
    cwnd: int  # bytes
    ssthresh: int  # bytes
    snd_mss: int  # effective send MSS
    rcv_mss: int  # the MSS we advertised
    snd_wnd: int
    rcv_wnd: int
    snd_wscale: int
    rcv_wscale: int
    timestamps: bool
    sack: bool
    bytes_sent: int  # retransmissions included
    bytes_retransmitted: int
    bytes_acked: int
    bytes_received: int
    unacked: int  # bytes in flight
    sacked: int
    lost: int
    segments_sent: int
    segments_received: int
    retransmits: int
    timeouts: int
    recoveries: int
    tail_loss_probes: int
    dsacks_received: int
    paws_drops: int
    challenge_acks_suppressed: int
    keepalive_probes: int
    out_of_order_refused: int  # segments not held: they would have been one out-of-order block too many


def connection_info(conn: "Connection") -> TcpInfo:
    tx, rx = conn.tx, conn.rx
    return TcpInfo(
        state=str(conn.state),
        congestion_control=tx.cc.name,
        recovery=tx.state,
        rtt=tx.rtt.srtt,
        rttvar=tx.rtt.rttvar,
        rto=tx.rtt.rto,
        min_rtt=tx.rack.min_rtt,
        cwnd=tx.cc.cwnd,
        ssthresh=tx.cc.ssthresh,
        snd_mss=tx.eff_mss,
        rcv_mss=conn.config.mss,
        snd_wnd=tx.snd_wnd,
        rcv_wnd=rx.window(),
        snd_wscale=tx.snd_wscale,
        rcv_wscale=rx.wscale,
        timestamps=conn.ts.enabled,
        sack=tx.sack_ok,
        bytes_sent=tx.bytes_sent,
        bytes_retransmitted=tx.bytes_retransmitted,
        bytes_acked=tx.bytes_acked,
        bytes_received=rx.rcv_offset,
        unacked=tx.outstanding,
        sacked=tx.board.sacked_bytes,
        lost=tx.board.lost_bytes,
        segments_sent=conn.segments_sent,
        segments_received=conn.segments_received,
        retransmits=tx.retransmits,
        timeouts=tx.rto_count,
        recoveries=tx.recoveries,
        tail_loss_probes=tx.tlp_probes,
        dsacks_received=tx.dsacks,
        paws_drops=conn.ts.paws_drops,
        challenge_acks_suppressed=conn.challenge_acks.suppressed,
        keepalive_probes=conn.keepalive.probes,
        out_of_order_refused=rx.ooo.refused,
    )
