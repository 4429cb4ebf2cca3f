"""RFC 9293 §3.10.7 and RFC 5961, state by segment: the reply class Linux gives for each crafted segment against
the reply class our stack gives for the same segment, with the connection's fate after it (``alive``/``reset``).
IPv4 covers every state from LISTEN to TIME-WAIT (the closing states in which the server closes first come from
a half-close of its application, see ``harness.Session``); IPv6 repeats the LISTEN and ESTABLISHED rows.

Each case passes when the two classes are equal, or equal to the documented pair in ``KNOWN`` where we differ on
purpose (the RFC clause is in the entry). Where our stack is wrong, the case is ``xfail(strict=True)`` with the
clause it breaks, so that fixing the stack turns it into a failure that asks for the entry to be removed.
"""

from dataclasses import dataclass

import pytest

from stack.wire import ACK, FIN, PSH, RST, SYN

from .harness import STATES, Probe, against_listener, in_state, on_both

KINDS = {
    "SYN": (SYN, b""),
    "SYN-ACK": (SYN | ACK, b""),
    "ACK": (ACK, b""),
    "FIN": (FIN | ACK, b""),
    "RST": (RST, b""),
    "RST-ACK": (RST | ACK, b""),
    "DATA": (PSH | ACK, b"x"),
}
# Where SEG.SEQ falls against the server's receive window (RFC 9293 §3.10.7.4, first check).
POSITIONS = ("rcv.nxt-1", "rcv.nxt", "inside", "last-in-window", "right-edge", "beyond")
LISTEN_EXTRA = {"FIN-without-ACK": (FIN, b""), "DATA-without-ACK": (PSH, b"x")}


@dataclass(frozen=True)
class Known:
    """A case where our class differs from Linux's: both classes as observed, and why."""

    linux: str
    ours: str
    clause: str
    ours_wrong: bool = False  # True: our stack breaks ``clause`` (the case is a strict xfail); False: Linux does


# Linux accepts a zero-length segment whose SEG.SEQ is RCV.NXT+RCV.WND (tcp_sequence() tests
# !after(seq, rcv_nxt + window)); the RFC's window excludes it.
RIGHT_EDGE = (
    'RFC 9293 §3.10.7.4: a zero-length segment is acceptable iff "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND"; '
    "Linux also accepts SEG.SEQ = RCV.NXT+RCV.WND. We follow the RFC"
)
RST_RIGHT_EDGE = (
    'RFC 5961 §3.2: "If the RST bit is set and the sequence number is outside the current receive window, '
    'silently drop the segment"; Linux counts RCV.NXT+RCV.WND as inside and sends a challenge ACK. We follow the RFC'
)
SYN_IN_SYN_RECEIVED = (
    'RFC 9293 §3.10.7.4, fourth (SYN bit), SYN-RECEIVED: "If the connection was initiated with a passive OPEN, '
    'then return this connection to the LISTEN state and return." We drop the embryonic connection silently; '
    "Linux (tcp_check_req, embryonic_reset) also drops it but sends an RST"
)
RST_AT_FIN = (
    'RFC 5961 §3.2: an RST is accepted only "If the RST bit is set and the sequence number exactly matches the next '
    'expected sequence number (RCV.NXT)"; Linux (tcp_reset_check) also accepts RCV.NXT-1 in CLOSE-WAIT, LAST-ACK '
    "and CLOSING, for peers that reset with the sequence number of their FIN. We follow the RFC"
)
TIME_WAIT_RST = (
    'RFC 1337 §3 (F1): "Ignore RST segments in TIME-WAIT state", so a stray reset cannot cut 2*MSL short (and, on '
    "an anycast node, release the connection's claim while the client's last segments are still in flight); we "
    "ignore it (TcpConfig.rfc1337, as FreeBSD). Linux runs with net.ipv4.tcp_rfc1337=0 and closes"
)
TIME_WAIT_REOPEN_FATE = (
    "Both reopen TIME-WAIT on a SYN beyond RCV.NXT (RFC 9293 §3.6.1 MAY-2, RFC 6191) and answer SYN,ACK; the fate "
    "check's out-of-window ACK (acknowledging the old incarnation) then meets the new embryonic connection. RFC "
    '9293 §3.10.7.4 checks the sequence number first ("If an incoming segment is not acceptable, an '
    'acknowledgment should be sent in reply"): we send that ACK. Linux (tcp_check_req) tests the ACK number '
    "before the window and resets. We follow the RFC order"
)

KNOWN: dict[str, Known] = {}
for _state in ("SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "LAST-ACK"):
    KNOWN[f"{_state}-ACK-at-right-edge"] = Known("NONE / alive", "ACK ack=rcv.nxt / alive", RIGHT_EDGE)
    for _kind in ("RST", "RST-ACK"):
        KNOWN[f"{_state}-{_kind}-at-right-edge"] = Known("ACK ack=rcv.nxt / alive", "NONE / alive", RST_RIGHT_EDGE)
# After the peer's FIN, Linux ignores a FIN in its window; at the right edge only we see it as outside and ACK it.
for _state in ("CLOSE-WAIT", "CLOSING", "LAST-ACK"):
    KNOWN[f"{_state}-FIN-at-right-edge"] = Known("NONE / alive", "ACK ack=rcv.nxt / alive", RIGHT_EDGE)
    for _kind in ("RST", "RST-ACK"):
        KNOWN[f"{_state}-{_kind}-at-rcv.nxt-1"] = Known("NONE / reset", "NONE / alive", RST_AT_FIN)
for _kind in ("RST", "RST-ACK"):
    KNOWN[f"TIME-WAIT-{_kind}-at-rcv.nxt"] = Known("NONE / reset", "NONE / alive", TIME_WAIT_RST)
for _position in ("inside", "last-in-window", "right-edge", "beyond"):
    KNOWN[f"TIME-WAIT-SYN-at-{_position}"] = Known(
        "SYN|ACK ack=seg.end / reset", "SYN|ACK ack=seg.end / alive", TIME_WAIT_REOPEN_FATE
    )
for _position in ("rcv.nxt", "inside", "last-in-window"):
    KNOWN[f"SYN-RECEIVED-SYN-at-{_position}"] = Known(
        "RST|ACK ack=seg.end / reset", "NONE / reset", SYN_IN_SYN_RECEIVED
    )
    KNOWN[f"SYN-RECEIVED-SYN-ACK-at-{_position}"] = Known(
        "RST seq=seg.ack / reset", "NONE / reset", SYN_IN_SYN_RECEIVED
    )


def _case(case_id: str, runner, probe: Probe, ipv6: bool = False):
    """IPv6 cases are named ``ipv6-<the IPv4 case>`` and share its KNOWN entry: the protocol logic is the same."""
    known = KNOWN.get(f"ipv6-{case_id}" if ipv6 else case_id, KNOWN.get(case_id))
    marks = [pytest.mark.xfail(strict=True, reason=known.clause)] if known and known.ours_wrong else []
    return pytest.param(runner, probe, known, ipv6, id=f"ipv6-{case_id}" if ipv6 else case_id, marks=marks)


IPV6_STATES = ("LISTEN", "ESTABLISHED")


def _cases():
    for ipv6 in (False, True):
        for kind, (flags, payload) in {**KINDS, **LISTEN_EXTRA}.items():
            yield _case(f"LISTEN-{kind}", against_listener, Probe(flags, payload=payload), ipv6)
        for state in STATES:
            if ipv6 and state not in IPV6_STATES:
                continue
            runner = in_state(state)
            for kind, (flags, payload) in KINDS.items():
                for position in POSITIONS:
                    yield _case(f"{state}-{kind}-at-{position}", runner, Probe(flags, position, payload), ipv6)


def check(linux_class: str, our_class: str, known: Known | None) -> None:
    if known is None or known.ours_wrong:
        assert our_class == linux_class, f"Linux: {linux_class!r}, ours: {our_class!r}"
    else:
        assert (linux_class, our_class) == (known.linux, known.ours), known.clause


@pytest.mark.root
@pytest.mark.parametrize(("runner", "probe", "known", "ipv6"), list(_cases()))
def test_reply_class_matches_linux(linux, ours, runner, probe, known, ipv6):
    linux_class, our_class = on_both(linux, ours, runner, probe, ipv6=ipv6)
    check(linux_class, our_class, known)
