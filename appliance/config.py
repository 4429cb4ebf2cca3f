"""The node's TOML configuration: parsed into frozen dataclasses, every mistake reported as one line that names the
key, the problem and the fix (``ConfigError``). The keys are a contract; README.md has the reference."""

import difflib
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from stack.host import DEFAULT_MAX_CONNECTIONS
from tunnel.keys import ClusterKeys

from .node import DEFAULT_HWM_MARGIN, ClusterConfig, DeadOwner
from .peers import ControlTiming
from .privileges import lookup
from .ranges import DEFAULT_HEADROOM

SERVICE_KINDS = ("echo", "discard", "proxy", "python")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
DEFAULT_CONTROL_DIR = "/run/anycast-tcp"
DEFAULT_GRACE = 10.0
_TIMING = ControlTiming()  # the control plane's defaults
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_DURATIONS = {"ms": 0.001, "s": 1.0, "m": 60.0}


class ConfigError(ValueError):
    """A configuration mistake: ``str()`` is the one line an operator sees."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}; {fix}" if fix else f"{key}: {problem}")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    kind: str
    listen: tuple[str, int]
    backend: tuple[str, int] | None = None  # proxy
    proxy_protocol: bool = False  # proxy: send the PROXY v2 header first
    handler: str | None = None  # python: "package.module:function"
    max_connections: int | None = None  # open at once from this service (None: only the node's limit)

    def describe(self) -> str:
        if self.kind == "proxy":
            return f"proxy on {_join(self.listen)} -> {_join(self.backend)}"
        if self.kind == "python":
            return f"python on {_join(self.listen)} ({self.handler})"
        return f"{self.kind} on {_join(self.listen)}"


@dataclass(frozen=True, slots=True)
class PeerConfig:
    id: int
    address: tuple[str, int]


@dataclass(frozen=True, slots=True)
class ClusterSection:
    ranges: int
    listen: tuple[str, int]
    key_file: Path
    peers: tuple[PeerConfig, ...]
    headroom: int = DEFAULT_HEADROOM
    hwm_margin: int = DEFAULT_HWM_MARGIN
    dead_owner: DeadOwner = DeadOwner.RST
    max_claims: int | None = None
    heartbeat_interval: float = _TIMING.heartbeat_interval
    dead_after: float = _TIMING.dead_after
    underlay_mtu: int = 1500


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: int
    tun_name: str
    addresses: tuple[str, ...]  # with prefix lengths, as the TUN holds them
    services: tuple[ServiceConfig, ...]
    mtu: int = 1500
    cluster: ClusterSection | None = None  # None: a single node; strangers get RSTs as in plain TCP
    metrics_listen: tuple[str, int] | None = None
    log_level: str = "info"
    log_format: str = "auto"
    control_socket: str = ""
    grace: float = DEFAULT_GRACE  # SIGTERM: how long open connections may take to finish before they are reset
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # the whole node's (TIME-WAIT included)
    user: str = ""  # become this user once the TUN and sockets are open ("": stay as started)
    source: str = "<config>"

    def cluster_config(self) -> ClusterConfig:
        """The sans-I/O node's view; validated when the file was read."""
        c = self.cluster
        assert c is not None
        extra = {} if c.max_claims is None else {"max_claims": c.max_claims}
        return ClusterConfig(
            node_id=self.node_id,
            ranges=c.ranges,
            headroom=c.headroom,
            hwm_margin=c.hwm_margin,
            dead_owner=c.dead_owner,
            underlay_mtu=c.underlay_mtu,
            underlay_ipv6=":" in c.listen[0],
            timing=ControlTiming(heartbeat_interval=c.heartbeat_interval, dead_after=c.dead_after),
            **extra,
        )

    def peer_map(self) -> dict[int, tuple[str, int]]:
        return {p.id: p.address for p in self.cluster.peers} if self.cluster else {}

    def load_keys(self) -> ClusterKeys:
        try:
            return ClusterKeys.load(self.cluster.key_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                "cluster.key_file",
                f"cannot use {str(self.cluster.key_file)!r}: {exc}",
                "make one with `anycast-tcp keygen`",
            ) from None


def load(path: str | Path) -> NodeConfig:
    """Read and validate ``path``; relative paths inside it (key_file) are relative to the file's directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read it ({exc.strerror or exc})", "give the path of a node.toml"
        ) from None
    return parse(text, source=str(path), base=path.parent)


def parse(text: str, *, source: str = "<config>", base: Path | None = None) -> NodeConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"not valid TOML ({exc})", "fix the syntax at that line") from None
    return _Reader(doc, base or Path.cwd(), source).node()


class _Reader:
    """Walks the document once; each getter records the key it consumed so leftovers are reported as unknown."""

    def __init__(self, doc: dict, base: Path, source: str) -> None:
        self.doc, self.base, self.source = doc, base, source

    def node(self) -> NodeConfig:
        doc = self.doc
        _only(doc, "", ("node", "tun", "cluster", "services", "metrics", "log"))
        node = _table(doc, "node", required=True)
        _only(node, "node", ("id", "control_socket", "grace", "max_connections", "user"))
        node_id = _int(node, "node.id", low=1)
        tun = _table(doc, "tun", required=True)
        _only(tun, "tun", ("name", "addresses", "mtu"))
        name = _str(tun, "tun.name")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name):
            raise ConfigError("tun.name", f"{name!r} is not a usable interface name", "use 1-15 letters, digits, - _ .")
        addresses = _addresses(tun)
        mtu = _int(tun, "tun.mtu", default=1500, low=1280, high=65535)
        cluster = self.cluster(node_id)
        services = self.services(addresses)
        metrics = _table(doc, "metrics")
        _only(metrics, "metrics", ("listen",))
        metrics_listen = _endpoint(metrics, "metrics.listen") if "listen" in metrics else None
        log = _table(doc, "log")
        _only(log, "log", ("level", "format"))
        level = _choice(log, "log.level", LOG_LEVELS, "info")
        fmt = _choice(log, "log.format", LOG_FORMATS, "auto")
        control = _str(node, "node.control_socket", default=f"{DEFAULT_CONTROL_DIR}/node{node_id}.sock")
        grace = _duration(node, "node.grace", DEFAULT_GRACE)
        max_connections = _int(node, "node.max_connections", default=DEFAULT_MAX_CONNECTIONS, low=1)
        user = _str(node, "node.user", default="")
        if user:
            try:
                lookup(user)
            except KeyError:
                raise ConfigError(
                    "node.user",
                    f"there is no user {user!r} on this machine",
                    "create it (useradd --system) or name one",
                ) from None
        config = NodeConfig(
            node_id=node_id,
            tun_name=name,
            addresses=addresses,
            services=services,
            mtu=mtu,
            cluster=cluster,
            metrics_listen=metrics_listen,
            log_level=level,
            log_format=fmt,
            control_socket=str(self.base / control) if control else "",
            grace=grace,
            max_connections=max_connections,
            user=user,
            source=self.source,
        )
        if cluster is not None:
            try:
                config.cluster_config()
            except ValueError as exc:  # the sans-I/O checks, whose messages carry their own fix
                text = str(exc)
                key = next((k for k in ("hwm_margin", "headroom", "dead_after") if k in text), "ranges")
                raise ConfigError(f"cluster.{key}", text, "") from None
        return config

    def cluster(self, node_id: int) -> ClusterSection | None:
        c = _table(self.doc, "cluster")
        if not c:
            return None
        _only(
            c,
            "cluster",
            (
                "ranges",
                "headroom",
                "hwm_margin",
                "listen",
                "key_file",
                "dead_owner",
                "peers",
                "max_claims",
                "heartbeat_interval",
                "dead_after",
                "underlay_mtu",
            ),
        )
        ranges = _int(c, "cluster.ranges", low=2)
        if ranges & (ranges - 1):
            raise ConfigError(
                "cluster.ranges", f"{ranges} is not a power of two", "use 2, 4, 8, 16 ... (at least the node count)"
            )
        if node_id > ranges:
            raise ConfigError(
                "node.id", f"{node_id} is above cluster.ranges={ranges}", "raise ranges or renumber the node"
            )
        peers = self.peers(c, node_id, ranges)
        if len(peers) + 1 > ranges:
            raise ConfigError(
                "cluster.ranges", f"{ranges} slices for {len(peers) + 1} nodes", "make ranges at least the node count"
            )
        key_file = _str(c, "cluster.key_file")
        headroom = _size(c, "cluster.headroom", DEFAULT_HEADROOM)
        dead_owner = _choice(c, "cluster.dead_owner", tuple(d.value for d in DeadOwner), "rst")
        return ClusterSection(
            ranges=ranges,
            listen=_endpoint(c, "cluster.listen"),
            key_file=self.base / key_file,
            peers=peers,
            headroom=headroom,
            # A small headroom (a lab's) scales the default margin down with it rather than failing on it.
            hwm_margin=_size(c, "cluster.hwm_margin", min(DEFAULT_HWM_MARGIN, headroom // 4)),
            dead_owner=DeadOwner(dead_owner),
            max_claims=_int(c, "cluster.max_claims", low=1) if "max_claims" in c else None,
            heartbeat_interval=_duration(c, "cluster.heartbeat_interval", _TIMING.heartbeat_interval),
            dead_after=_duration(c, "cluster.dead_after", _TIMING.dead_after),
            underlay_mtu=_int(c, "cluster.underlay_mtu", default=1500, low=576, high=65535),
        )

    def peers(self, c: dict, node_id: int, ranges: int) -> tuple[PeerConfig, ...]:
        raw = c.get("peers", [])
        if not isinstance(raw, list):
            raise ConfigError("cluster.peers", "must be a list of tables", "write each peer as [[cluster.peers]]")
        peers: dict[int, PeerConfig] = {}
        for i, p in enumerate(raw):
            key = f"cluster.peers[{i}]"
            if not isinstance(p, dict):
                raise ConfigError(key, "is not a table", "write each peer as [[cluster.peers]] with id and address")
            _only(p, key, ("id", "address"))
            peer_id = _int(p, f"{key}.id", low=1)
            if peer_id == node_id:
                raise ConfigError(f"{key}.id", f"{peer_id} is this node's own id", "list only the other nodes")
            if peer_id > ranges:
                raise ConfigError(f"{key}.id", f"{peer_id} is above cluster.ranges={ranges}", "raise ranges")
            if peer_id in peers:
                raise ConfigError(f"{key}.id", f"peer {peer_id} is listed twice", "give each peer once")
            peers[peer_id] = PeerConfig(peer_id, _endpoint(p, f"{key}.address"))
        return tuple(peers.values())

    def services(self, addresses: tuple[str, ...]) -> tuple[ServiceConfig, ...]:
        raw = self.doc.get("services", [])
        if not isinstance(raw, list):
            raise ConfigError("services", "must be a list of tables", "write each service as [[services]]")
        ours = {ipaddress.ip_interface(a).ip for a in addresses}
        seen: dict[tuple, int] = {}
        services = []
        for i, s in enumerate(raw):
            key = f"services[{i}]"
            if not isinstance(s, dict):
                raise ConfigError(key, "is not a table", "write each service as [[services]] with kind and listen")
            kind = _choice(s, f"{key}.kind", SERVICE_KINDS, None)
            allowed = {"echo": (), "discard": (), "proxy": ("backend", "proxy_protocol"), "python": ("handler",)}
            _only(s, key, ("kind", "listen", "max_connections", *allowed[kind]))
            listen = _endpoint(s, f"{key}.listen")
            if ipaddress.ip_address(listen[0]) not in ours:
                raise ConfigError(
                    f"{key}.listen",
                    f"{listen[0]} is not one of tun.addresses",
                    "serve on an address this node answers for",
                )
            if listen in seen:
                raise ConfigError(
                    f"{key}.listen", f"{_join(listen)} is taken by services[{seen[listen]}]", "use another port"
                )
            seen[listen] = i
            backend = _endpoint(s, f"{key}.backend") if kind == "proxy" else None
            proxy_protocol = False
            if kind == "proxy" and "proxy_protocol" in s:
                if s["proxy_protocol"] != "v2":
                    raise ConfigError(
                        f"{key}.proxy_protocol",
                        f"{s['proxy_protocol']!r} is not supported",
                        'write "v2" or leave it out',
                    )
                proxy_protocol = True
            handler = None
            if kind == "python":
                handler = _str(s, f"{key}.handler")
                if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", handler):
                    raise ConfigError(
                        f"{key}.handler", f"{handler!r} is not module:function", 'write it like "mypkg.app:handle"'
                    )
            limit = _int(s, f"{key}.max_connections", low=1) if "max_connections" in s else None
            services.append(ServiceConfig(kind, listen, backend, proxy_protocol, handler, limit))
        return tuple(services)


# -- typed getters: each names its key in the error ------------------------------------------------------------


def _only(table: dict, where: str, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            near = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean {near[0]!r}?" if near else f"allowed here: {', '.join(allowed)}"
            raise ConfigError(name, "unknown key", fix)


def _table(doc: dict, key: str, required: bool = False) -> dict:
    value = doc.get(key)
    if value is None:
        if required:
            raise ConfigError(f"[{key}]", "missing", f"add a [{key}] table (see README.md, Configuration)")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table", f"write it as [{key}]")
    return value


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _int(t: dict, key: str, *, default: int | None = None, low=None, high=None) -> int:
    value = t.get(_leaf(key), default)
    if value is None:
        raise ConfigError(key, "missing", "add it (a whole number)")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(key, f"{value!r} is not a whole number", "write a number without quotes")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f"at least {low}"
        raise ConfigError(key, f"{value} is out of range", f"use {bounds}")
    return value


def _str(t: dict, key: str, *, default: str | None = None) -> str:
    value = t.get(_leaf(key), default)
    if value is None:
        raise ConfigError(key, "missing", "add it (a quoted string)")
    if not isinstance(value, str):
        raise ConfigError(key, f"{value!r} is not a string", "put it in quotes")
    return value


def _choice(t: dict, key: str, choices: tuple[str, ...], default: str | None) -> str:
    value = t.get(_leaf(key), default)
    if value is None:
        raise ConfigError(key, "missing", f"choose one of {', '.join(choices)}")
    if value not in choices:
        raise ConfigError(key, f"{value!r} is not known", f"choose one of {', '.join(choices)}")
    return value


def _size(t: dict, key: str, default: int) -> int:
    value = t.get(_leaf(key), default)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", value, re.IGNORECASE) if isinstance(value, str) else None
    if not m or int(m[1]) == 0:
        raise ConfigError(key, f"{value!r} is not a size", 'write bytes or a size like "256MiB" (B, KiB, MiB, GiB)')
    return int(m[1]) * _UNITS[(m[2] or "").lower()]


def _duration(t: dict, key: str, default: float) -> float:
    value = t.get(_leaf(key), default)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)\s*", value) if isinstance(value, str) else None
    if not m or float(m[1]) <= 0:
        raise ConfigError(key, f"{value!r} is not a duration", 'write seconds or a duration like "500ms", "10s", "2m"')
    return float(m[1]) * _DURATIONS[m[2]]


def _endpoint(t: dict, key: str) -> tuple[str, int]:
    value = _str(t, key)
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        address, number = None, -1
    if not sep or address is None or not 0 < number < 65536:
        raise ConfigError(
            key, f"{value!r} is not address:port", 'write it like "10.10.0.1:6080" or "[2001:db8::1]:6080"'
        )
    return str(address), number


def _addresses(tun: dict) -> tuple[str, ...]:
    raw = tun.get("addresses")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("tun.addresses", "missing or empty", 'list the anycast addresses, like ["192.0.2.10/32"]')
    out = []
    for i, a in enumerate(raw):
        try:
            iface = ipaddress.ip_interface(a)
        except ValueError:
            raise ConfigError(
                f"tun.addresses[{i}]", f"{a!r} is not an address", 'write it like "192.0.2.10/32"'
            ) from None
        if "/" not in str(a):
            raise ConfigError(
                f"tun.addresses[{i}]", f"{a!r} has no prefix length", f'write "{a}/{iface.max_prefixlen}"'
            )
        out.append(str(iface))
    if len(set(out)) != len(out):
        raise ConfigError("tun.addresses", "an address is listed twice", "list each once")
    return tuple(out)


def _join(endpoint: tuple[str, int] | None) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
