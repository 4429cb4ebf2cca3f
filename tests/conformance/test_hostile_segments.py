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
FLAG_SETS = {"all-flags": 0xFF, "no-flags": 0}

KNOWN: dict[str, Known] = {}


def _case(case_id: str, runner, probe: Probe):
    known = KNOWN.get(case_id)
    marks = [pytest.mark.xfail(strict=True, reason=known.clause)] if known and known.ours_wrong else []
    return pytest.param(runner, probe, known, id=case_id, marks=marks)


def _cases():
    established = in_state("ESTABLISHED")
    for name, faults in FAULTS.items():
        yield _case(f"listener-{name}", against_listener, Probe(SYN, faults=faults))
        yield _case(f"established-{name}", established, Probe(PSH | ACK, payload=b"x", faults=faults))
    for name, flags in FLAG_SETS.items():
        yield _case(f"listener-{name}", against_listener, Probe(flags))
        yield _case(f"established-{name}", established, Probe(flags, payload=b"x"))


@pytest.mark.root
@pytest.mark.parametrize(("runner", "probe", "known"), list(_cases()))
def test_hostile_segment_is_handled_like_linux(linux, ours, runner, probe, known):
    linux_class, our_class = on_both(linux, ours, runner, probe)
    check(linux_class, our_class, known)
