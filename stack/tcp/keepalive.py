"""TCP keep-alives (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6): off unless asked for, per connection.

A probe is an ACK one byte behind SND.UNA with no data (SHLD-12), which any live peer answers with an ACK.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeepaliveSettings:
    # RFC 9293 (MUST-25): "they MUST default to off"; (MUST-27, MUST-28): the interval "MUST be configurable
    # and MUST default to no less than two hours". Interval and count are Linux's defaults.
    enabled: bool = False
    idle: float = 7200.0
    interval: float = 75.0
    count: int = 9

    def __post_init__(self) -> None:
        if self.idle <= 0 or self.interval <= 0:
            raise ValueError("keep-alive idle and interval must be positive (seconds)")
        if self.count < 1:
            raise ValueError("keep-alive count must be at least 1 (MUST-29: one lost probe is not a dead peer)")


class Keepalive:
    __slots__ = ("last_heard", "probes", "settings")

    def __init__(self, settings: KeepaliveSettings, now: float) -> None:
        self.settings = settings
        self.last_heard = now
        self.probes = 0  # unanswered probes in a row

    def heard(self, now: float) -> None:
        """Anything from the peer proves it alive."""
        self.last_heard = now
        self.probes = 0

    def deadline(self) -> float | None:
        s = self.settings
        if not s.enabled:
            return None
        return self.last_heard + s.idle + self.probes * s.interval

    def expired(self) -> bool:
        """Called at the deadline with nothing outstanding: True when the peer is to be declared dead; else a
        probe is due. RFC 9293 (MUST-29): only after ``count`` unanswered probes."""
        if self.probes >= self.settings.count:
            return True
        self.probes += 1
        return False


class RateLimit:
    """At most ``per_second`` events in any one-second window (RFC 5961 §7: "implementations SHOULD include an
    ACK throttling mechanism" for challenge ACKs)."""

    __slots__ = ("_count", "_window_start", "allowed", "per_second", "suppressed")

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window_start = -1.0
        self._count = 0
        self.allowed = 0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if now - self._window_start >= 1.0:
            self._window_start, self._count = now, 0
        if self._count < self.per_second:
            self._count += 1
            self.allowed += 1
            return True
        self.suppressed += 1
        return False
