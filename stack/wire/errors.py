"""The one exception the wire layer raises for bytes it cannot accept."""


class WireError(ValueError):
    """Malformed input from the network: truncated, inconsistent lengths, bad checksum, unsupported encoding.

    Every ``parse_*`` function raises this and nothing else, whatever bytes it is given, so the packet
    boundary catches exactly one type, counts it and drops the packet (the peer sent garbage; h11's
    RemoteProtocolError). Misuse of a builder by our own code (a field out of range) raises a plain ValueError
    instead.
    """
