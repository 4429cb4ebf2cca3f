"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4).

Sequence numbers have no total order: ``a`` is "before" ``b`` when the forward distance from ``a`` to ``b`` is
less than half the space (RFC 1982 serial arithmetic). Every comparison of sequence numbers in the project goes
through these helpers; a bare ``<`` between two of them anywhere else is a bug.
"""

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """``a + n`` in sequence space (``n`` may be negative)."""
    return (a + n) & SEQ_MASK


def seq_sub(a: int, b: int) -> int:
    """Signed distance ``a - b`` in the range [-2**31, 2**31): positive when ``a`` is after ``b``."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a`` strictly before ``b``."""
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    """``a`` before or equal to ``b``."""
    return a == b or ((a - b) & SEQ_MASK) >= _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a`` strictly after ``b``."""
    return ((b - a) & SEQ_MASK) >= _HALF


def seq_ge(a: int, b: int) -> bool:
    """``a`` after or equal to ``b``."""
    return a == b or ((b - a) & SEQ_MASK) >= _HALF


def seq_max(a: int, b: int) -> int:
    return b if seq_lt(a, b) else a


def seq_min(a: int, b: int) -> int:
    return a if seq_lt(a, b) else b


def in_window(seq: int, start: int, size: int) -> bool:
    """``start <= seq < start + size`` in sequence space (RFC 9293 §3.4: "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND")."""
    return ((seq - start) & SEQ_MASK) < size


def between(low: int, seq: int, high: int) -> bool:
    """``low <= seq <= high`` in sequence space, for ``high`` at or after ``low``."""
    return ((seq - low) & SEQ_MASK) <= ((high - low) & SEQ_MASK)
