"""The retransmission queue as a scoreboard: one record per segment in flight (RFC 6675 §3, RFC 8985 §5.2).

Positions are stream offsets (unbounded ints: data byte 0 is ISS + 1, the FIN takes one offset after the
data), so nothing here wraps. Records keep the boundaries they were sent with; a SACK block marks a record only
when it covers all of it, which a receiver that ACKs what it got always does.

Besides sequence order, records are indexed in transmission order (RACK walks them oldest-sent first): a
list of (transmission number, record) read from a head index (a deque's first block would cost an idle
connection 600 bytes), where a retransmission appends a fresh entry and the old one goes
stale, as do all of a record's entries once it is cumulatively acknowledged (its number becomes 0); stale and
SACKed entries are dropped when they reach the front.
"""

import bisect
from itertools import islice


class Sent:
    __slots__ = ("acked", "end", "fin", "lost", "retransmitted", "sacked", "start", "xmit_number", "xmit_time")

    def __init__(self, start: int, end: int, fin: bool, now: float, number: int) -> None:
        self.start = start
        self.end = end
        self.fin = fin
        self.xmit_time = now
        self.xmit_number = number
        self.retransmitted = False
        self.sacked = False
        self.lost = False
        self.acked = False  # cumulatively acknowledged: gone from the scoreboard

    def __repr__(self) -> str:
        marks = "S" * self.sacked + "L" * self.lost + "R" * self.retransmitted
        return f"<Sent {self.start}-{self.end} {marks} t={self.xmit_time:.3f}>"


class Scoreboard:
    __slots__ = ("_by_time", "_head", "_numbers", "_records", "_starts", "_time_head", "lost_bytes", "sacked_bytes")

    def __init__(self) -> None:
        self._records: list[Sent] = []
        self._starts: list[int] = []
        self._head = 0  # records before _head were cumulatively acknowledged
        self._by_time: list[tuple[int, Sent]] = []
        self._time_head = 0  # entries before it are stale
        self._numbers = 0
        self.sacked_bytes = 0
        self.lost_bytes = 0  # lost and not yet retransmitted (so not in flight)

    def __len__(self) -> int:
        return len(self._records) - self._head

    def __iter__(self):
        return iter(self._records[self._head :])

    @property
    def first(self) -> Sent | None:
        return self._records[self._head] if self._head < len(self._records) else None

    @property
    def last(self) -> Sent | None:
        return self._records[-1] if self._head < len(self._records) else None

    # -- transmission ---------------------------------------------------------------------------------------

    def sent(self, start: int, end: int, fin: bool, now: float) -> Sent:
        """Record a new segment (beyond everything sent before)."""
        self._numbers += 1
        record = Sent(start, end, fin, now, self._numbers)
        self._records.append(record)
        self._starts.append(start)
        self._by_time.append((self._numbers, record))
        return record

    def sent_run(self, start: int, end: int, size: int, now: float) -> None:
        """Record new segments of ``size`` bytes from ``start`` to ``end`` (a multiple of ``size`` apart), sent
        at once in one super-segment: each is its own record, as if sent alone."""
        records, starts, by_time, number = self._records, self._starts, self._by_time, self._numbers
        for offset in range(start, end, size):
            number += 1
            record = Sent(offset, offset + size, False, now, number)
            records.append(record)
            starts.append(offset)
            by_time.append((number, record))
        self._numbers = number

    def retransmitted(self, record: Sent, now: float) -> None:
        if record.acked:
            return
        if record.lost:
            record.lost = False
            self.lost_bytes -= record.end - record.start
        record.retransmitted = True
        record.xmit_time = now
        self._numbers += 1
        record.xmit_number = self._numbers
        self._by_time.append((self._numbers, record))

    # -- acknowledgments ------------------------------------------------------------------------------------

    def cumulative_ack(self, offset: int) -> list[Sent]:
        """Remove what ``offset`` acknowledges; return the records it newly delivered (not those SACKed
        before). A record acknowledged only in part is trimmed, not removed."""
        records, delivered = self._records, []
        i = self._head
        while i < len(records) and records[i].end <= offset:
            record = records[i]
            record.acked = True
            record.xmit_number = 0  # its entries in the transmission order go stale
            if record.sacked:
                self.sacked_bytes -= record.end - record.start
            else:
                delivered.append(record)
                if record.lost:
                    self.lost_bytes -= record.end - record.start
            i += 1
        if i < len(records) and records[i].start < offset:
            record = records[i]
            cut = offset - record.start
            if record.sacked:
                self.sacked_bytes -= cut
            elif record.lost:
                self.lost_bytes -= cut
            record.start = self._starts[i] = offset
        self._head = i
        if i > 1024 and i * 2 > len(records):
            del records[:i]
            del self._starts[:i]
            self._head = 0
        return delivered

    def sack(self, start: int, end: int) -> list[Sent]:
        """Mark the records wholly inside [start, end) as SACKed; return those newly marked."""
        i = max(bisect.bisect_left(self._starts, start, self._head), self._head)
        records, marked = self._records, []
        while i < len(records) and records[i].end <= end:
            record = records[i]
            if not record.sacked:
                record.sacked = True
                self.sacked_bytes += record.end - record.start
                if record.lost:
                    record.lost = False
                    self.lost_bytes -= record.end - record.start
                marked.append(record)
            i += 1
        return marked

    def mark_lost(self, record: Sent) -> bool:
        if record.lost or record.sacked or record.acked:
            return False
        record.lost = True
        self.lost_bytes += record.end - record.start
        return True

    def mark_all_lost(self, keep_sacked: bool) -> None:
        """After a retransmission timeout: everything unacknowledged is presumed lost (RFC 6675 §5.1); SACK
        marks are kept unless the receiver may have reneged on them."""
        for record in self:
            if record.sacked and not keep_sacked:
                record.sacked = False
                self.sacked_bytes -= record.end - record.start
            self.mark_lost(record)

    def clear_lost(self) -> None:
        for record in self:
            record.lost = False
        self.lost_bytes = 0

    def resegment(self, mss: int) -> int:
        """The path MTU fell: split records longer than ``mss``. Pieces not SACKed are presumed lost, to go out
        again at the new size (Linux's tcp_simple_retransmit). Returns how many pieces were marked lost."""
        old = self._records[self._head :]
        if all(r.end - r.start <= mss for r in old):
            return 0
        records, marked = [], 0
        for record in old:
            length = record.end - record.start
            if length <= mss:
                records.append(record)
                continue
            record.xmit_number = 0  # its entries in the transmission order go stale
            if record.lost:
                self.lost_bytes -= length
            for start in range(record.start, record.end, mss):
                end = min(start + mss, record.end)
                piece = Sent(start, end, record.fin and end == record.end, record.xmit_time, 0)
                piece.retransmitted = record.retransmitted
                piece.sacked = record.sacked
                if not record.sacked:
                    piece.lost = True
                    self.lost_bytes += end - start
                    marked += 1
                records.append(piece)
        self._records = records
        self._starts = [r.start for r in records]
        self._head = 0
        return marked

    def first_lost(self) -> Sent | None:
        """RFC 6675 NextSeg (1): the lowest segment presumed lost and not yet retransmitted."""
        if not self.lost_bytes:
            return None
        for record in self:
            if record.lost:
                return record
        return None

    def by_transmission(self):
        """Records still in flight and not delivered, oldest transmission first (stale entries pruned from the
        front as they are met)."""
        entries, i = self._by_time, self._time_head
        while i < len(entries):
            number, record = entries[i]
            if number == record.xmit_number and not record.sacked:
                break
            i += 1
        if i == len(entries):
            entries.clear()
            i = 0
        elif i > 1024 and i * 2 > len(entries):
            del entries[:i]
            i = 0
        self._time_head = i
        for number, record in islice(entries, i, None):
            if number == record.xmit_number and not record.sacked and not record.lost:
                yield record
