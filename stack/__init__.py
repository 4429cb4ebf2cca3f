"""anycast-tcp's TCP/IP host: wire formats, sequence arithmetic, the sans-I/O TCP core, the host demux, and the
asyncio runtime (``from stack import Stack``)."""


def __getattr__(name: str):
    # Imported lazily so that the sans-I/O core (stack.tcp, stack.wire) never pulls in asyncio.
    if name == "Stack":
        from .aio import Stack

        return Stack
    raise AttributeError(f"module 'stack' has no attribute {name!r}")
