"""The reset a segment gets when no connection will take it (RFC 9293 §3.10.7.1, the CLOSED state)."""

from ..seq import seq_add
from ..wire import ACK, RST, TcpSegment


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """The RST answering ``seg``, or None when ``seg`` is itself a RST.

    RFC 9293 §3.10.7.1: "An incoming segment containing a RST is discarded. An incoming segment not containing
    a RST causes a RST to be sent in response. The acknowledgment and sequence field values are selected to
    make the reset sequence acceptable to the TCP endpoint that sent the offending segment. If the ACK bit is
    off, sequence number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. If the ACK bit is on,
    <SEQ=SEG.ACK><CTL=RST>".
    """
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpSegment(seg.dst_port, seg.src_port, 0, seq_add(seg.seq, seg.seg_len), RST | ACK, 0)
