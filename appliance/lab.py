"""The anycast lab: network namespaces where one kernel-TCP client reaches an anycast service address that a router
moves between N nodes, and the nodes share a private underlay.

::

    client ──────── router ─┬──────── node 1 ─┐
    10.A.0.2   10.A.0.1     ├ 10.A.k.1   10.A.k.2   (one /24 per node, k = 1..N)
                            └──────── node N ─┤
                                              └── underlay bridge 10.(A+1).0.k/24, in a namespace of its own

The router's route for the anycast address (192.0.2.10/32 and 2001:db8::10/128) names one node at a time
(``route_to``, ``RouteFlipper``): the client's packets go to that node, and every node's replies go back through
the router to the client whatever the route says. A node's own process (the user-space stack behind a TUN device)
runs inside ``node_ns(k)``; the lab gives it routing only, never the anycast address itself.

Choices, and why:

* The underlay bridge has a namespace of its own (``switch``), not the router's: the underlay is the cluster's
  private network, so nothing the router does (routes, counters, a flip) touches it, and the router's counters
  count client traffic only.
* All of a lab's addresses live inside its own namespaces, so two labs with the same ``net`` can run side by side
  (as can any other test's 10.x addresses); ``net`` (default 40, which no other test uses) only keeps captures
  and ``ip`` listings easy to tell apart.
* The client, router and node links have permanent neighbour entries (fixed MAC addresses): the first packet after
  a flip to a node goes out at once instead of waiting for ARP or neighbour discovery, and no ARP or ND packets
  blur the router's per-node counters.
* Reverse-path filtering is off in the router and the nodes. The router sees the anycast address arrive as a source
  from every node while its route names one, which strict rp_filter drops; Debian's default is loose (2), and new
  namespaces copy the host's IPv4 settings, so it is set explicitly. In a node nothing asymmetric happens in the
  kernel (forwarded segments travel in UDP), but the node's TUN injects packets from the anycast address, and
  whether that passes strict rp_filter would depend on how the node routes; the lab removes the question.
* Each node has an ``unreachable`` route for the anycast address at metric 4096. The node's own route into its TUN
  (metric 0 for IPv4, 1024 for IPv6) wins while the TUN exists; before and after, the client's packets get an ICMP
  unreachable instead of bouncing between node and router until their TTL runs out.

Every route change goes through one persistent ``ip -batch -`` process in the router namespace: the change and a
``route get`` that reads it back, so a flip costs no process spawn and returns once the kernel has applied it
(measured here: 0.4 ms median, 1 ms worst in 400 flips, for both families; one ``ip`` spawn per flip takes 2 ms;
see ``RouteFlipper.latencies``).
"""

import contextlib
import json
import os
import random
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass

from tunnel._checks import check_prefix
from tunnel.netns import NetNamespace

ANYCAST_V4 = "192.0.2.10"  # RFC 5737 TEST-NET-1
ANYCAST_V6 = "2001:db8::10"  # RFC 3849 documentation prefix
UNDERLAY_PORT = 6080  # the UDP port every node's underlay endpoint uses
FALLBACK_METRIC = 4096  # the node's unreachable route for the anycast address; the TUN's own route wins
MAX_NODES = 99  # interface names hold the node number in two digits
FLIP_INTERVAL = 0.2  # seconds between route changes by default


@dataclass(frozen=True)
class LinkCounters:
    """Counters of one router interface facing a node: ``tx`` is what the router delivered to the node."""

    tx_packets: int
    tx_bytes: int
    rx_packets: int
    rx_bytes: int


def _mac(net: int, link: int, k: int, side: int) -> str:
    """A locally administered unicast MAC (first octet 02) unique within the lab."""
    return f"02:00:{net:02x}:{link:02x}:{k:02x}:{side:02x}"


def run_batch(ns: NetNamespace, lines: list[str]) -> None:
    """Run ``ip -n <ns> -batch -`` over ``lines``; a failure raises RuntimeError naming the failing line."""
    argv = ["ip", "-n", ns.name, "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = done.stderr.strip()
        failed = ""
        if (line := re.search(r"Command failed -:(\d+)", message)) and 0 < int(line[1]) <= len(lines):
            failed = f" at `ip -n {ns.name} {lines[int(line[1]) - 1]}`"
        raise RuntimeError(f"`{' '.join(argv)}` failed{failed}: {message}")


_FORWARDER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


def _make_forwarder() -> None:
    """Forwarding on, redirects and reverse-path filtering off, in the namespace of the calling thread (run it with
    ``call_inside``: /proc/sys/net belongs to the namespace of the thread that opens it)."""
    for key, value in _FORWARDER_SYSCTLS.items():
        with open(os.path.join("/proc/sys", key.replace(".", "/")), "w") as f:
            f.write(value)
    # The effective rp_filter is max(all, interface): so every existing interface as well; `default` covers the
    # interfaces made later (the node's TUN).
    for name in os.listdir("/proc/sys/net/ipv4/conf"):
        with open(f"/proc/sys/net/ipv4/conf/{name}/rp_filter", "w") as f:
            f.write("0")


class _IpBatch:
    """One long-lived ``ip -j -n <ns> -batch -``: commands in on stdin, ``route get`` answers out as one JSON line
    each. Without ``-force`` ip exits at the first failing command; the next call starts a new one."""

    def __init__(self, ns: NetNamespace) -> None:
        self._ns = ns
        self._process: subprocess.Popen | None = None
        self._stderr = ""

    def call(self, commands: list[str], queries: list[str]) -> list[list[dict]]:
        process = self._process
        if process is None or process.poll() is not None:
            process = self._process = subprocess.Popen(
                ["ip", "-j", "-n", self._ns.name, "-batch", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write("".join(f"{line}\n" for line in [*commands, *queries]))
            process.stdin.flush()
            answers = [process.stdout.readline() for _ in queries]
        except BrokenPipeError:
            answers = [""]
        if any(not answer for answer in answers):
            self.close()
            raise RuntimeError(f"`ip -n {self._ns.name}` failed on {commands}: {self._stderr.strip()}")
        return [json.loads(answer) for answer in answers]

    def close(self) -> None:
        process, self._process = self._process, None
        self._stderr = ""
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._stderr = process.stderr.read() if process.stderr else ""  # type: ignore[union-attr]
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


class Lab:
    """The namespaces, links and routes of one anycast experiment. Make one with ``Lab.build()`` and use it as a
    context manager (or call ``close()``): everything it made goes away, also when building fails half-way.

    Nodes are numbered 1 to ``nodes``. Attributes: ``client``, ``router``, ``switch`` (the underlay bridge's
    namespace) are ``NetNamespace``; ``nodes``, ``prefix``, ``net``.
    """

    ANYCAST_V4 = ANYCAST_V4
    ANYCAST_V6 = ANYCAST_V6
    UNDERLAY_PORT = UNDERLAY_PORT

    def __init__(self, nodes: int, prefix: str, net: int) -> None:
        if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes={nodes!r} must be an int from 1 to {MAX_NODES}")
        if not isinstance(net, int) or not 0 <= net <= 254:
            raise ValueError(f"net={net!r} must be an int from 0 to 254: the lab uses 10.net.x.x and 10.(net+1).0.x")
        # Interface names: prefix (<= 6) + 6 hex digits + a role of <= 3 characters fits IFNAMSIZ - 1 = 15.
        self.prefix = check_prefix(prefix)
        self.nodes = nodes
        self.net = net
        self.stem = prefix + secrets.token_hex(3)
        self.client: NetNamespace | None = None
        self.router: NetNamespace | None = None
        self.switch: NetNamespace | None = None
        self._node_ns: list[NetNamespace] = []
        self._namespaces: list[NetNamespace] = []
        self._routes: _IpBatch | None = None
        self._routes_lock = threading.Lock()
        self._current: int | None = None
        self._closed = False

    # --- building ----------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, nodes: int = 3, prefix: str = "atl", *, net: int = 40) -> "Lab":
        """Create the client, router, switch and ``nodes`` node namespaces, wire them, and point the anycast route
        at node 1."""
        lab = cls(nodes, prefix, net)
        try:
            lab._build()
        except BaseException:
            lab.close()
            raise
        return lab

    def _create(self) -> NetNamespace:
        ns = NetNamespace.create(self.prefix)
        self._namespaces.append(ns)
        return ns

    def _build(self) -> None:
        self.client, self.router, self.switch = self._create(), self._create(), self._create()
        for _ in range(self.nodes):
            self._node_ns.append(self._create())
        self._routes = _IpBatch(self.router)
        run_batch(self.router, self._router_commands())
        run_batch(self.switch, self._switch_commands())
        run_batch(self.client, self._client_commands())
        for k in self.node_numbers:
            run_batch(self.node_ns(k), self._node_commands(k))
        # After the links exist, so that rp_filter is off on every interface (see the module docstring).
        for ns in [self.router, *self._node_ns]:
            ns.call_inside(_make_forwarder)
        self.route_to(1)

    def _router_commands(self) -> list[str]:
        assert self.client is not None
        net, c = self.net, self.client_link
        lines = [
            f"link add {c[1]} address {_mac(net, 0, 0, 1)} type veth "
            f"peer name {c[0]} address {_mac(net, 0, 0, 2)} netns {self.client.name}",
            f"addr add {self.router_address(0, 4)}/24 dev {c[1]}",
            f"addr add {self.router_address(0, 6)}/64 dev {c[1]} nodad",
            f"link set {c[1]} up",
            f"neigh replace {self.client_address(4)} lladdr {_mac(net, 0, 0, 2)} dev {c[1]} nud permanent",
            f"neigh replace {self.client_address(6)} lladdr {_mac(net, 0, 0, 2)} dev {c[1]} nud permanent",
        ]
        for k in self.node_numbers:
            r, n = self.router_link(k), self.node_link(k)
            lines += [
                f"link add {r} address {_mac(net, 1, k, 1)} type veth "
                f"peer name {n} address {_mac(net, 1, k, 2)} netns {self.node_ns(k).name}",
                f"addr add {self.router_address(k, 4)}/24 dev {r}",
                f"addr add {self.router_address(k, 6)}/64 dev {r} nodad",
                f"link set {r} up",
                f"neigh replace {self.node_address(k, 4)} lladdr {_mac(net, 1, k, 2)} dev {r} nud permanent",
                f"neigh replace {self.node_address(k, 6)} lladdr {_mac(net, 1, k, 2)} dev {r} nud permanent",
            ]
        return lines

    def _switch_commands(self) -> list[str]:
        bridge = self.stem + "br"
        lines = [f"link add {bridge} type bridge", f"link set {bridge} up"]
        for k in self.node_numbers:
            port = f"{self.stem}s{k}"
            lines += [
                f"link add {port} type veth peer name {self.underlay_link(k)} netns {self.node_ns(k).name}",
                f"link set {port} master {bridge}",
                f"link set {port} up",
            ]
        return lines

    def _client_commands(self) -> list[str]:
        c = self.client_link[0]
        return [
            f"addr add {self.client_address(4)}/24 dev {c}",
            f"addr add {self.client_address(6)}/64 dev {c} nodad",
            f"link set {c} up",
            f"neigh replace {self.router_address(0, 4)} lladdr {_mac(self.net, 0, 0, 1)} dev {c} nud permanent",
            f"neigh replace {self.router_address(0, 6)} lladdr {_mac(self.net, 0, 0, 1)} dev {c} nud permanent",
            f"route add default via {self.router_address(0, 4)}",
            f"route add default via {self.router_address(0, 6)}",
        ]

    def _node_commands(self, k: int) -> list[str]:
        n, u = self.node_link(k), self.underlay_link(k)
        return [
            f"addr add {self.node_address(k, 4)}/24 dev {n}",
            f"addr add {self.node_address(k, 6)}/64 dev {n} nodad",
            f"link set {n} up",
            f"neigh replace {self.router_address(k, 4)} lladdr {_mac(self.net, 1, k, 1)} dev {n} nud permanent",
            f"neigh replace {self.router_address(k, 6)} lladdr {_mac(self.net, 1, k, 1)} dev {n} nud permanent",
            f"route add default via {self.router_address(k, 4)}",
            f"route add default via {self.router_address(k, 6)}",
            f"route add unreachable {ANYCAST_V4}/32 metric {FALLBACK_METRIC}",
            f"route add unreachable {ANYCAST_V6}/128 metric {FALLBACK_METRIC}",
            f"addr add {self.node_underlay(k, 4)[0]}/24 dev {u}",
            f"addr add {self.node_underlay(k, 6)[0]}/64 dev {u} nodad",
            f"link set {u} up",
        ]

    # --- names and addresses -----------------------------------------------------------------------------------

    @property
    def node_numbers(self) -> range:
        return range(1, self.nodes + 1)

    def node_ns(self, k: int) -> NetNamespace:
        """Node ``k``'s namespace: start the node with ``lab.node_ns(k).popen([...])``."""
        return self._node_ns[self._check_node(k) - 1]

    def tun_name(self, k: int) -> str:
        """The name node ``k`` gives its TUN device (the lab does not create it)."""
        return f"{self.stem}t{self._check_node(k)}"

    @property
    def client_link(self) -> tuple[str, str]:
        """(client end, router end) of the client's link."""
        return self.stem + "c", self.stem + "r0"

    def router_link(self, k: int) -> str:
        """The router's interface facing node ``k``."""
        return f"{self.stem}r{self._check_node(k)}"

    def node_link(self, k: int) -> str:
        """Node ``k``'s interface facing the router."""
        return f"{self.stem}n{self._check_node(k)}"

    def underlay_link(self, k: int) -> str:
        """Node ``k``'s interface on the underlay bridge."""
        return f"{self.stem}u{self._check_node(k)}"

    @staticmethod
    def anycast(family: int = 4) -> str:
        return {4: ANYCAST_V4, 6: ANYCAST_V6}[_check_family(family)]

    def client_address(self, family: int = 4) -> str:
        return self._link_address(0, family, 2)

    def router_address(self, k: int, family: int = 4) -> str:
        """The router's address on link ``k`` (0: the client's link; ``k``: node k's), next hop for that side."""
        if k != 0:
            self._check_node(k)
        return self._link_address(k, family, 1)

    def node_address(self, k: int, family: int = 4) -> str:
        """Node ``k``'s address on its router link: the router's next hop when the route points at node ``k``."""
        return self._link_address(self._check_node(k), family, 2)

    def _link_address(self, link: int, family: int, host: int) -> str:
        """Host ``host`` on link ``link``: 10.net.link.host/24, or fd00:net::host/64 (client link) and
        fd00:net:link::host/64 (node links)."""
        if _check_family(family) == 4:
            return f"10.{self.net}.{link}.{host}"
        return f"fd00:{self.net}::{host}" if link == 0 else f"fd00:{self.net}:{link}::{host}"

    def node_underlay(self, k: int, family: int = 4) -> tuple[str, int]:
        """(address, UDP port) of node ``k`` on the underlay."""
        self._check_node(k)
        if _check_family(family) == 4:
            return f"10.{self.net + 1}.0.{k}", UNDERLAY_PORT
        return f"fd00:{self.net + 1}::{k}", UNDERLAY_PORT

    def peers_of(self, k: int, family: int = 4) -> list[tuple[str, int]]:
        """The underlay endpoints of every node but ``k``, in node order."""
        self._check_node(k)
        return [self.node_underlay(j, family) for j in self.node_numbers if j != k]

    def tun_addresses(self, k: int) -> list[str]:
        """Addresses a node may give the kernel's side of its TUN: subnets used nowhere else in the lab. (Never the
        anycast address: it would become local to the node's kernel, whose own TCP would answer the client.)"""
        self._check_node(k)
        return [f"10.{self.net}.{100 + k}.1/24", f"fd00:{self.net}:{100 + k}::1/64"]

    def _check_node(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.nodes:
            raise ValueError(f"node {k!r} does not exist: this lab's nodes are 1 to {self.nodes}")
        return k

    # --- routing and counters ----------------------------------------------------------------------------------

    @property
    def current(self) -> int | None:
        """The node the router's anycast route points at (None before the first route_to or after close)."""
        return self._current

    def route_to(self, k: int) -> None:
        """Point the router's anycast /32 and /128 at node ``k``; returns once the kernel has both (read back)."""
        self._check_node(k)
        self._check_open()
        gateways = [self.node_address(k, 4), self.node_address(k, 6)]
        with self._routes_lock:
            assert self._routes is not None
            answers = self._routes.call(
                [
                    f"route replace {ANYCAST_V4}/32 via {gateways[0]}",
                    f"route replace {ANYCAST_V6}/128 via {gateways[1]}",
                ],
                [f"route get {ANYCAST_V4}", f"route get {ANYCAST_V6}"],
            )
            seen = [answer[0].get("gateway") for answer in answers]
            if seen != gateways:
                raise RuntimeError(f"route to node {k} did not take: the router routes the anycast address via {seen}")
            self._current = k

    def router_counters(self) -> dict[int, LinkCounters]:
        """Per node ``k``: the counters of the router's interface facing it (``tx_*``: delivered to node ``k``)."""
        assert self.router is not None
        links = {self.router_link(k): k for k in self.node_numbers}
        counters = {}
        for link in json.loads(self.router.ip("-j", "-s", "link", "show")):
            if link["ifname"] in links:
                stats = link["stats64"]
                counters[links[link["ifname"]]] = LinkCounters(
                    stats["tx"]["packets"], stats["tx"]["bytes"], stats["rx"]["packets"], stats["rx"]["bytes"]
                )
        return counters

    def flipper(self, interval: float = FLIP_INTERVAL, *, seed: int | None = None) -> "RouteFlipper":
        """A RouteFlipper for this lab (not started)."""
        return RouteFlipper(self, interval, seed=seed)

    # --- description and teardown ------------------------------------------------------------------------------

    def namespaces(self) -> list[NetNamespace]:
        """Every namespace of the lab (client, router, switch, nodes 1..N), in creation order."""
        return list(self._namespaces)

    def describe(self) -> dict:
        """What was built, as plain data (for a CLI to print and for tests)."""
        assert self.client is not None and self.router is not None and self.switch is not None
        return {
            "anycast": [ANYCAST_V4, ANYCAST_V6],
            "client": {"netns": self.client.name, "addresses": [self.client_address(4), self.client_address(6)]},
            "router": {"netns": self.router.name, "routes_to": self.current},
            "switch": {"netns": self.switch.name, "bridge": self.stem + "br"},
            "nodes": {
                k: {
                    "netns": self.node_ns(k).name,
                    "addresses": [self.node_address(k, 4), self.node_address(k, 6)],
                    "underlay": [self.node_underlay(k, 4), self.node_underlay(k, 6)],
                    "tun": self.tun_name(k),
                }
                for k in self.node_numbers
            },
        }

    def close(self) -> None:
        """Stop the route process and delete every namespace (taking their links and processes with them), also
        after a partial build. Idempotent; raises the first failure after trying everything."""
        if self._closed:
            return
        self._closed = True
        self._current = None
        errors: list[BaseException] = []
        with self._routes_lock:
            if self._routes is not None:
                try:
                    self._routes.close()
                except Exception as exc:
                    errors.append(exc)
        for ns in reversed(self._namespaces):
            try:
                ns.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the lab is closed")

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"route -> node {self._current}"
        return f"<Lab {self.stem} nodes={self.nodes} net=10.{self.net} {state}>"


def _check_family(family: int) -> int:
    if family not in (4, 6):
        raise ValueError(f"family={family!r} must be 4 or 6")
    return family


class RouteFlipper:
    """Moves the lab's anycast route to another node every ``interval`` seconds, in its own thread: round-robin
    (1, 2, …, N, 1, …, starting after the current node), or with ``seed`` a seeded random node other than the
    current one. ``flips`` counts route changes made; ``latencies`` holds each one's time (seconds) from the request
    to the kernel's read-back; ``history`` holds (monotonic time, node). ``stop()`` ends the thread and re-raises
    an error it met. Usable as a context manager (start on enter, stop on exit)."""

    def __init__(self, lab: Lab, interval: float = FLIP_INTERVAL, *, seed: int | None = None) -> None:
        if lab.nodes < 2:
            raise ValueError("a RouteFlipper needs a lab with at least 2 nodes")
        if not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"interval={interval!r} must be a positive number of seconds, like 0.2")
        self.lab = lab
        self.interval = float(interval)
        self.seed = seed
        self.flips = 0
        self.latencies: list[float] = []
        self.history: list[tuple[float, int]] = []
        self._rng = random.Random(seed) if seed is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def next_node(self) -> int:
        current = self.lab.current or self.lab.nodes
        if self._rng is None:
            return current % self.lab.nodes + 1
        return self._rng.choice([k for k in self.lab.node_numbers if k != current])

    def start(self) -> "RouteFlipper":
        if self._thread is not None:
            raise ValueError("this RouteFlipper was already started; make a new one")
        self._thread = threading.Thread(target=self._run, name=f"route-flipper-{self.lab.stem}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                k = self.next_node()
                started = time.monotonic()
                self.lab.route_to(k)
                done = time.monotonic()
                self.latencies.append(done - started)
                self.history.append((done, k))
                self.flips += 1
                # A late flip does not cause a burst of catch-up flips.
                next_at = max(next_at + self.interval, done)
        except BaseException as exc:
            self._error = exc

    def __enter__(self) -> "RouteFlipper":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
