"""One JSON-serialisable view of a running node, for the metrics endpoint, the control socket and tests.

``snapshot`` only reads: counters the stack, the node and the devices already keep, and one pass over the
connection table. It adds no work per packet, and costs O(connections + own claims) per call, so a scrape every
few seconds is free next to the traffic. It must run on the event loop's thread: the stack's dicts are not
safe to read from another one.

A plain ``Stack`` and an ``AnycastStack`` give the same keys; a plain node's anycast parts are zeros or empty.
"""

import dataclasses
from collections.abc import Mapping

from stack.tcp.state import State
from tunnel.encap import DROP_REASONS
from tunnel.peer import PeerStats

# The classifier's outcomes (docs/anycast.md, "Classification"), in its order, plus the two other ways a segment
# reaches its owner. Listed in full so that every series exists, at zero, from the node's first scrape.
OUTCOMES = (
    "syn_no_listener",
    "forward_claimed",
    "forward_by_ack",
    "owner_reset",
    "flooded",
    "dead_owner_reset",
    "dead_owner_dropped",
    "not_forwarded_twice",
    "stranger_dropped",
    "forward_handshake_elsewhere",
    "forward_icmp",
    "icmp_no_connection",
)
# Authenticated datagrams the node discarded: reported as drops beside the Host's and the Opener's.
NODE_DROPS = (
    "forwarded_in_too_many_hops",
    "control_malformed",
    "control_not_for_us",
    "control_stale_epoch",
    "control_out_of_order",
    "claims_refused_table_full",
    "forward_unsplittable",
)
# The node's other counters, listed so their series exist from the start (an alert on "rising" needs a zero).
CONTROL_EVENTS = (
    "heartbeats_sent",
    "heartbeats_received",
    "control_retransmits",
    "control_resyncs",
    "claims_waiting_for_room",
    "peer_deaths",
    "peer_revivals",
    "peer_restarts",
    "peers_added",
    "peers_removed",
    "forwarded_cut",
)
# Counters with a place of their own in the snapshot; every other node counter lands in "control".
_PLACED = frozenset(
    (*OUTCOMES, *NODE_DROPS, "forwarded_out", "forwarded_in", "flooded_copies", "claims_made", "claims_released")
)
CLAIM_RTT_QUANTILES = (0.5, 0.99, 1.0)


def snapshot(stack, *, started_at: float, now: float, services: list[dict] | None = None) -> dict:
    """The state of ``stack`` (a ``Stack`` or ``AnycastStack``, or anything with the attributes read here:
    ``host``, ``device.stats``, ``addresses``, and for a node ``node`` and ``socket``). ``started_at`` and ``now``
    are wall-clock seconds; ``services`` is passed through as given."""
    host = stack.host
    node = getattr(stack, "node", None)
    by_state = dict.fromkeys((str(s) for s in State), 0)
    retransmitted = host.retransmits_of_closed
    for conn in host.connections.values():
        by_state[conn.state.value] += 1
        retransmitted += conn.tx.retransmits
    peer_socket = getattr(stack, "socket", None)
    return {
        "node": node.node_id if node is not None else None,
        "incarnation": node.incarnation if node is not None else None,
        "anycast": node is not None,
        "started_at": started_at,
        "uptime": max(now - started_at, 0.0),
        "addresses": [str(a) for a in stack.addresses],
        "services": list(services or []),
        "connections": {"total": len(host.connections), "by_state": by_state, "listeners": len(host.listeners)},
        "segments": {
            # Every IP packet handed to the TCP host (the TUN's and those forwarded in) and every one it produced.
            "in": host.packets_in,
            "out": host.packets_out,
            "retransmitted": retransmitted,  # the closed connections' and the open ones': a true counter
        },
        "claims": _claims(node),
        "peers": _peers(node),
        "forwarding": _forwarding(node),
        "control": _control(node),
        "drops": {
            "host": dict(host.drops),
            "tunnel": _zero_filled(node.opener.drops, DROP_REASONS) if node is not None else {},
            "node": {name: node.counters[name] for name in NODE_DROPS} if node is not None else {},
        },
        "tun": dataclasses.asdict(stack.device.stats),
        "peer_socket": dataclasses.asdict(peer_socket.stats if peer_socket is not None else PeerStats()),
    }


def _zero_filled(counts: Mapping[str, int], names: tuple[str, ...]) -> dict[str, int]:
    """Every known name, at zero if need be, and any other that ``counts`` has."""
    out = dict.fromkeys(names, 0)
    out.update(counts)
    return out


def _claims(node) -> dict:
    if node is None:
        return {"own": 0, "held": 0, "acknowledged": 0, "announced": 0, "released": 0, "ack_seconds": {}}
    counters = node.counters
    return {
        "own": len(node.own),
        "held": len(node.claims),
        # Own claims every live peer has acknowledged (their fence is down). A gauge: the node keeps no total.
        "acknowledged": sum(1 for claim in node.own.values() if not claim.waiting),
        "announced": counters["claims_made"],
        "released": counters["claims_released"],
        "ack_seconds": _quantiles(node.claim_rtts),
    }


def _quantiles(samples) -> dict[str, float]:
    """Nearest-rank quantiles of the node's recent claim round trips (a bounded ring, so this stays cheap)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1
    return {str(q): ordered[min(last, round(q * last))] for q in CLAIM_RTT_QUANTILES}


def _peers(node) -> dict[str, dict]:
    if node is None:
        return {}
    return {
        str(peer_id): {"liveness": peer.liveness.value, "address": format_address(peer.address)}
        for peer_id, peer in sorted(node.peers.items())
    }


def format_address(address: tuple) -> str:
    """``host:port``, with an IPv6 host in brackets; a socket's 4-tuple loses its flow info and scope."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _forwarding(node) -> dict:
    if node is None:
        return {"out": 0, "in": 0, "flooded_copies": 0, "by_outcome": {}}
    counters = node.counters
    return {
        "out": counters["forwarded_out"],
        "in": counters["forwarded_in"],
        "flooded_copies": counters["flooded_copies"],  # part of "out": one per live peer per flooded segment
        "by_outcome": {name: counters[name] for name in OUTCOMES},
    }


def _control(node) -> dict[str, int]:
    """The node's other counters (heartbeats, retransmissions, resyncs, deaths, restarts ...), whatever they are,
    so a counter added to the node shows up here without a change to this module."""
    if node is None:
        return {}
    return _zero_filled({k: n for k, n in node.counters.items() if k not in _PLACED}, CONTROL_EVENTS)
