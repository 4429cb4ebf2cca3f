"""The anycast node and the appliance around it. ``from appliance import Node`` embeds a whole node (TUN, anycast
forwarding, services, metrics) in an asyncio application: ``node = await Node.start("node.toml")``."""

__all__ = ["Node"]


def __getattr__(name: str):
    # Lazily, so that the sans-I/O parts (appliance.node, appliance.sim) import without the runtime's dependencies.
    if name == "Node":
        from .daemon import Node

        return Node
    raise AttributeError(f"module 'appliance' has no attribute {name!r}")
