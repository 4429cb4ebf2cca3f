"""Hostile segments: malformed headers and nonsense flag sets, against a listener (as a SYN, which would draw a
SYN-ACK if it were taken) and into an ESTABLISHED connection (as one byte of data at RCV.NXT, which would be
acknowledged if it were taken). Each case compares the reply class and the connection's fate with Linux's.

Observed on Linux (and asserted for us): a bad checksum, a data offset below 5 and an IPv4 IHL beyond the
packet are dropped without a word; an illegal option length (0, 1 or running past the header) only ends the
option walk and the segment is processed as if the options were absent (tcp_parse_options returns early), which
is RFC 9293 §3.1 (MUST-7): "a TCP implementation MUST be prepared to handle an illegal option length (e.g., zero)".
"""

import pytest

from stack.wire import ACK, PSH, SYN

from .harness import Probe, against_listener, in_state, on_both
from .test_state_matrix import Known, check

FAULTS = {
    "bad-tcp-checksum": (("bad_checksum", True),),  # RFC 9293 §3.1 (MUST-2/3): verify, drop on mismatch
    "data-offset-4": (("data_offset", 4),),  # RFC 9293 §3.1: the header is at least five 32-bit words
    "option-length-0": (("options", bytes((2, 0, 0, 0))),),
    "option-length-1": (("options", bytes((2, 1, 0, 0))),),
    "option-past-the-header": (("options", bytes((1, 1, 8, 10))),),  # NOP NOP timestamps(10) with 2 bytes left
    "ipv4-ihl-beyond-the-packet": (("ihl", 15),),  # RFC 791 §3.1: 60 header bytes claimed, 40 present
}
# IPv6 has no IHL; its own header fault is a payload length running past the packet (RFC 8200 §3).
FAULTS_IPV6 = {name: faults for name, faults in FAULTS.items() if name != "ipv4-ihl-beyond-the-packet"}
FAULTS_IPV6["ipv6-payload-length-beyond-the-packet"] = (("ipv6_payload_extra", 20),)
FLAG_SETS = {"all-flags": 0xFF, "no-flags": 0}

KNOWN: dict[str, Known] = {}


def _case(case_id: str, runner, probe: Probe, ipv6: bool):
    case_id = f"ipv6-{case_id}" if ipv6 else case_id
    known = KNOWN.get(case_id)
    marks = [pytest.mark.xfail(strict=True, reason=known.clause)] if known and known.ours_wrong else []
    return pytest.param(runner, probe, known, ipv6, id=case_id, marks=marks)


def _cases():
    established = in_state("ESTABLISHED")
    for ipv6, faults_by_name in ((False, FAULTS), (True, FAULTS_IPV6)):
        for name, faults in faults_by_name.items():
            yield _case(f"listener-{name}", against_listener, Probe(SYN, faults=faults), ipv6)
            yield _case(f"established-{name}", established, Probe(PSH | ACK, payload=b"x", faults=faults), ipv6)
        for name, flags in FLAG_SETS.items():
            yield _case(f"listener-{name}", against_listener, Probe(flags), ipv6)
            yield _case(f"established-{name}", established, Probe(flags, payload=b"x"), ipv6)


@pytest.mark.root
@pytest.mark.parametrize(("runner", "probe", "known", "ipv6"), list(_cases()))
def test_hostile_segment_is_handled_like_linux(linux, ours, runner, probe, known, ipv6):
    linux_class, our_class = on_both(linux, ours, runner, probe, ipv6=ipv6)
    check(linux_class, our_class, known)
