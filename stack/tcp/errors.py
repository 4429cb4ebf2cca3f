"""Errors raised to the application. The peer's mistakes are never raised: they are dropped and counted."""


class LocalProtocolError(Exception):
    """The application used the connection in a way TCP does not allow (RFC 9293 §3.10 error responses)."""
