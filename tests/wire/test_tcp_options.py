"""TCP options: RFC 9293 §3.1–3.2 (MUST-4..7, 64, 65, 68, 69), RFC 7323, RFC 2018, and junk as Linux takes
it."""

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stack.wire import (
    ACK,
    NO_OPTIONS,
    SYN,
    TcpOptions,
    TcpSegment,
    build_options,
    build_tcp,
    parse_options,
    parse_tcp,
)

from .strategies import BUFFER_KINDS, tcp_options

MSS_1460 = b"\x02\x04\x05\xb4"
TS = b"\x08\x0a" + struct.pack("!II", 0x01020304, 0x05060708)


@given(opts=tcp_options())
def test_build_then_parse_gives_back_the_same_options(opts):
    raw = build_options(opts)
    assert len(raw) % 4 == 0
    assert len(raw) <= 40
    assert parse_options(raw) == opts


def test_no_options_is_empty_both_ways():
    assert build_options(NO_OPTIONS) == b""
    assert parse_options(b"") is NO_OPTIONS


def test_linux_syn_layout_mss_sackperm_timestamps_nop_wscale():
    # What Linux puts on a SYN: MSS, SACK-permitted folded into the timestamps word, NOP + window scale.
    opts = TcpOptions(mss=1460, window_scale=7, sack_permitted=True, timestamps=(0x01020304, 0x05060708))
    assert build_options(opts) == MSS_1460 + b"\x04\x02" + TS + b"\x01\x03\x03\x07"


def test_linux_layout_nop_nop_before_timestamps_and_before_lone_sack_permitted():
    assert build_options(TcpOptions(timestamps=(0x01020304, 0x05060708))) == b"\x01\x01" + TS
    assert build_options(TcpOptions(sack_permitted=True)) == b"\x01\x01\x04\x02"


def test_linux_layout_sack_blocks_behind_two_nops():
    opts = TcpOptions(sack_blocks=((1, 2), (3, 4)))
    assert build_options(opts) == b"\x01\x01\x05\x12" + struct.pack("!4I", 1, 2, 3, 4)


def test_unknown_options_go_last_and_are_padded_with_zeros():
    # RFC 9293 §3.1 (MUST-69): after EOL, padding of zeros; EOL is itself a zero byte.
    raw = build_options(TcpOptions(mss=536, unknown=((30, b"\x01"),)))
    assert raw == b"\x02\x04\x02\x18" + b"\x1e\x03\x01" + b"\x00"


def test_parse_timestamps_fast_path_agrees_with_the_general_walk():
    fast = parse_options(b"\x01\x01" + TS)
    walked = parse_options(b"\x01" + TS + b"\x01")  # same option, laid out so the fast path does not apply
    assert fast == walked == TcpOptions(timestamps=(0x01020304, 0x05060708))


def test_options_need_not_start_on_a_word_boundary():
    # RFC 9293 §3.2 (MUST-64): "receivers MUST be prepared to process options even if they do not begin on a
    # word boundary".
    raw = b"\x01" + MSS_1460 + b"\x01\x01\x03\x03\x05" + b"\x04\x02" + b"\x01"
    assert parse_options(raw) == TcpOptions(mss=1460, window_scale=5, sack_permitted=True)


def test_eol_ends_the_list_and_later_bytes_are_not_read():
    assert parse_options(b"\x00" + MSS_1460 + b"\x00\x00\x00") == NO_OPTIONS
    assert parse_options(MSS_1460 + b"\x00\x03\x03\x07") == TcpOptions(mss=1460)


def test_nop_padding_alone_is_no_options():
    assert parse_options(b"\x01" * 40) == NO_OPTIONS


def test_option_length_zero_stops_parsing_keeps_earlier_and_flags_malformed():
    # RFC 9293 §3.1 (MUST-7): "MUST be prepared to handle an illegal option length (e.g., zero)"; Linux stops.
    raw = MSS_1460 + b"\x1e\x00" + b"\x03\x03\x07\x00"
    assert parse_options(raw) == TcpOptions(mss=1460, malformed=True)


def test_option_length_one_stops_parsing_and_flags_malformed():
    assert parse_options(MSS_1460 + b"\x08\x01" + TS) == TcpOptions(mss=1460, malformed=True)


def test_option_length_past_the_end_stops_parsing_and_flags_malformed():
    assert parse_options(MSS_1460 + b"\x08\x0a\x00\x00") == TcpOptions(mss=1460, malformed=True)


def test_kind_in_the_last_byte_with_no_room_for_a_length_is_malformed():
    assert parse_options(MSS_1460 + b"\x01\x01\x01\x02") == TcpOptions(mss=1460, malformed=True)


def test_unknown_kinds_are_kept_in_order_with_their_data():
    # RFC 9293 §3.1 (MUST-6): unknown options with a length field are ignored without error.
    raw = b"\x1e\x04\xab\xcd" + MSS_1460 + b"\xfd\x02" + b"\x06\x06\x01\x02\x03\x04"
    assert parse_options(raw) == TcpOptions(mss=1460, unknown=((30, b"\xab\xcd"), (253, b""), (6, b"\x01\x02\x03\x04")))


@pytest.mark.parametrize("length", [2, 3, 5, 6])
def test_mss_with_the_wrong_length_is_ignored_and_parsing_goes_on(length):
    raw = b"\x02" + bytes((length,)) + b"\x05" * (length - 2) + b"\x01\x03\x03\x07"
    assert parse_options(raw) == TcpOptions(window_scale=7, malformed=True)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x03\x04\x07\x00",  # window scale is 3 bytes
        b"\x04\x03\x00",  # SACK-permitted is 2 bytes
        b"\x08\x08" + bytes(6),  # timestamps are 10 bytes
        b"\x05\x02",  # SACK needs at least one block
        b"\x05\x0b" + bytes(9),  # SACK is 2 + 8n bytes
    ],
)
def test_known_options_with_the_wrong_length_are_ignored_and_flag_malformed(raw):
    assert parse_options(raw) == TcpOptions(malformed=True)


@pytest.mark.parametrize("shift", [15, 16, 255])
def test_window_scale_over_14_is_clamped_to_14(shift):
    # RFC 7323 §2.3: "the TCP SHOULD log the error but MUST use 14 instead of the specified value".
    assert parse_options(b"\x01\x03\x03" + bytes((shift,))) == TcpOptions(window_scale=14)


def test_four_sack_blocks_are_read():
    edges = (1, 2, 0xFFFFFFF0, 5, 100, 200, 0xFFFFFFFF, 0)
    raw = b"\x01\x01\x05\x22" + struct.pack("!8I", *edges)
    assert parse_options(raw) == TcpOptions(sack_blocks=((1, 2), (0xFFFFFFF0, 5), (100, 200), (0xFFFFFFFF, 0)))


def test_five_sack_blocks_cannot_be_real_and_are_ignored():
    assert parse_options(b"\x05\x2a" + bytes(40)) == TcpOptions(malformed=True)


def test_a_repeated_option_last_one_wins():
    assert parse_options(MSS_1460 + b"\x02\x04\x02\x18") == TcpOptions(mss=536)


def test_options_are_read_on_any_segment_even_mss_without_syn():
    # RFC 9293 §3.1 (MUST-5): "A TCP implementation MUST be able to receive a TCP Option in any segment"; what
    # an MSS on a non-SYN means is the connection's to decide.
    header = struct.pack("!HHIIHHHH", 1, 2, 3, 4, (6 << 12) | ACK, 5, 0, 0)
    seg = parse_tcp(header + MSS_1460, b"\x00" * 4, b"\x00" * 4, verify_checksum=False)
    assert seg.options == TcpOptions(mss=1460)


@pytest.mark.parametrize(
    "opts",
    [
        TcpOptions(mss=1460),
        TcpOptions(window_scale=7),
        TcpOptions(sack_permitted=True, timestamps=(1, 2)),
    ],
)
def test_syn_only_options_are_refused_on_a_segment_without_syn(opts):
    # RFC 9293 §3.2 (MUST-65): MSS "MUST NOT be sent in other segments"; RFC 2018 §2 and RFC 7323 §2.2
    # likewise.
    with pytest.raises(ValueError, match="without SYN"):
        build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5, options=opts), b"\x00" * 4, b"\x00" * 4)
    build_tcp(TcpSegment(1, 2, 3, 4, SYN | ACK, 5, options=opts), b"\x00" * 4, b"\x00" * 4)


@pytest.mark.parametrize(
    "opts",
    [
        TcpOptions(window_scale=15),
        TcpOptions(mss=65536),
        TcpOptions(mss=-1),
        TcpOptions(timestamps=(1 << 32, 0)),
        TcpOptions(sack_blocks=((1, 2),) * 5),
        TcpOptions(timestamps=(1, 2), sack_blocks=((1, 2),) * 4),  # 12 + 36 bytes
        TcpOptions(unknown=((2, b"\x05\xb4"),)),  # MSS has its own field
        TcpOptions(unknown=((0, b""),)),
        TcpOptions(unknown=((30, bytes(39)),)),
        TcpOptions(unknown=((256, b""),)),
    ],
)
def test_build_options_refuses_what_cannot_or_must_not_be_sent(opts):
    with pytest.raises(ValueError):
        build_options(opts)


def test_three_sack_blocks_fit_with_timestamps():
    opts = TcpOptions(timestamps=(1, 2), sack_blocks=((1, 2),) * 3)
    assert len(build_options(opts)) == 40


@given(raw=st.binary(max_size=60), kind=BUFFER_KINDS)
@example(raw=b"\x02\x00" * 20, kind=bytes)
@example(raw=b"\x05\xff", kind=bytes)
def test_parse_options_never_raises_and_never_loops(raw, kind):
    opts = parse_options(kind(raw))
    assert isinstance(opts, TcpOptions)
    assert opts == parse_options(raw)
    assert opts.window_scale is None or 0 <= opts.window_scale <= 14
    assert len(opts.sack_blocks) <= 4
