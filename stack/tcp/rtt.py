"""Retransmission timeout estimation (RFC 6298), with Karn's algorithm left to the caller."""

# RFC 6298 (2.3): "alpha=1/8 and beta=1/4 (as suggested in [JK88])", K = 4.
ALPHA = 1 / 8
BETA = 1 / 4
K = 4
# RFC 6298 (2.3): G, the clock granularity; our clock is a float of seconds, so we pick Linux's 1 ms tick.
CLOCK_GRANULARITY = 0.001


class RttEstimator:
    __slots__ = ("backoff", "rto", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(self, rto_initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.rto = rto_initial  # RFC 6298 (2.1)
        self.backoff = 0  # doublings since the last new sample (RFC 6298 (5.5))

    def sample(self, r: float, samples_per_rtt: int = 1) -> None:
        """Feed one RTT measurement from a segment that was not retransmitted (Karn's algorithm). With
        timestamps there is a sample per ACK; RFC 7323 Appendix G divides alpha and beta by the samples
        expected per RTT so that RTTVAR does not collapse."""
        if self.srtt is None:
            # RFC 6298 (2.2)
            self.srtt = r
            self.rttvar = r / 2
        else:
            # RFC 6298 (2.3): update RTTVAR before SRTT.
            alpha, beta = ALPHA / samples_per_rtt, BETA / samples_per_rtt
            self.rttvar = (1 - beta) * self.rttvar + beta * abs(self.srtt - r)
            self.srtt = (1 - alpha) * self.srtt + alpha * r
        rto = self.srtt + max(CLOCK_GRANULARITY, K * self.rttvar)
        self.rto = min(max(rto, self.rto_min), self.rto_max)  # RFC 6298 (2.4), (2.5)
        self.backoff = 0

    def on_timeout(self) -> None:
        # RFC 6298 (5.5): "The host MUST set RTO <- RTO * 2 ("back off the timer")"; (2.5) caps it.
        self.rto = min(self.rto * 2, self.rto_max)
        self.backoff += 1
