"""node.toml: the documented example parses to what it says, and every mistake is one line naming key, problem, fix."""

from pathlib import Path

import pytest

from appliance.config import ConfigError, load, parse
from appliance.node import DeadOwner
from tunnel.keys import generate_key_line

MiB = 1 << 20

# The contract's example (issue 6), verbatim but for the key file's directory.
EXAMPLE = """
[node]
id = 1
[tun]
name = "atcp0"
addresses = ["192.0.2.10/32"]     # the anycast service addresses this node answers for
mtu = 1500
[cluster]                          # absent: a single node, strangers get RSTs as in plain TCP
ranges = 8
headroom = "256MiB"
listen = "10.10.0.1:6080"         # underlay address for the tunnel
key_file = "cluster.key"
dead_owner = "rst"                 # or "drop"
[[cluster.peers]]
id = 2
address = "10.10.0.2:6080"
[[services]]
kind = "echo"                      # echo | discard | proxy | python
listen = "192.0.2.10:7"
[[services]]
kind = "proxy"                     # terminate here, relay to a unicast backend over kernel TCP
listen = "192.0.2.10:80"
backend = "10.20.0.5:8080"
proxy_protocol = "v2"              # optional: the HAProxy PROXY v2 header, so backends see the client address
[[services]]
kind = "python"
listen = "192.0.2.10:8080"
handler = "mypkg.app:handle"       # async def handle(reader, writer)
[metrics]
listen = "127.0.0.1:9100"          # Prometheus text format
[log]
level = "info"
format = "json"                    # json | console
"""


def test_the_documented_example_parses_to_what_it_says(tmp_path: Path):
    (tmp_path / "node.toml").write_text(EXAMPLE)
    (tmp_path / "cluster.key").write_text(generate_key_line() + "\n")
    (tmp_path / "cluster.key").chmod(0o600)
    config = load(tmp_path / "node.toml")
    assert (config.node_id, config.tun_name, config.addresses, config.mtu) == (1, "atcp0", ("192.0.2.10/32",), 1500)
    c = config.cluster
    assert (c.ranges, c.headroom, c.listen, c.dead_owner) == (8, 256 * MiB, ("10.10.0.1", 6080), DeadOwner.RST)
    assert c.key_file == tmp_path / "cluster.key"  # relative to the config file, not the working directory
    assert config.peer_map() == {2: ("10.10.0.2", 6080)}
    assert [s.kind for s in config.services] == ["echo", "proxy", "python"]
    proxy = config.services[1]
    assert (proxy.backend, proxy.proxy_protocol) == (("10.20.0.5", 8080), True)
    assert config.services[2].handler == "mypkg.app:handle"
    assert config.metrics_listen == ("127.0.0.1", 9100)
    assert (config.log_level, config.log_format) == ("info", "json")
    assert config.cluster_config().plan.slice_size == 2**32 // 8
    assert len(config.load_keys().keys) == 1


def test_without_a_cluster_the_node_is_plain_tcp():
    config = parse('[node]\nid = 1\n[tun]\nname = "t0"\naddresses = ["192.0.2.10/32", "2001:db8::10/128"]\n')
    assert config.cluster is None and config.peer_map() == {}
    assert config.services == () and config.metrics_listen is None
    assert config.control_socket == "/run/anycast-tcp/node1.sock" and config.grace == 10.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [('"256MiB"', 256 * MiB), ('"100 MB"', 10**8), ('"131072KiB"', 128 * MiB), ("134217728", 128 * MiB)],
)
def test_sizes(value, expected):
    config = parse(EXAMPLE.replace('headroom = "256MiB"', f"headroom = {value}"))
    assert config.cluster.headroom == expected


def _base(**replace: str) -> str:
    text = EXAMPLE
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


MISTAKES = [
    ("[node]\nid = 1\n", "[tun]: missing; add a [tun] table"),
    (_base(**{"id = 1\n[tun]": 'id = "one"\n[tun]'}), "node.id: 'one' is not a whole number"),
    (_base(**{"id = 1\n[tun]": "id = 0\n[tun]"}), "node.id: 0 is out of range; use at least 1"),
    (
        _base(**{"id = 1\n[tun]": "id = 1\nmax_connections = 0\n[tun]"}),
        "node.max_connections: 0 is out of range; use at least 1",
    ),
    (
        _base(**{"id = 1\n[tun]": 'id = 1\nuser = "no-such-user-here"\n[tun]'}),
        "node.user: there is no user 'no-such-user-here' on this machine; create it (useradd --system) or name one",
    ),
    (
        _base(**{'listen = "192.0.2.10:7"': 'listen = "192.0.2.10:7"\nmax_connections = "many"'}),
        "services[0].max_connections: 'many' is not a whole number",
    ),
    (_base(**{'name = "atcp0"': 'name = "a very long interface name"'}), "tun.name: 'a very long interface name'"),
    (
        _base(**{'["192.0.2.10/32"]': '["192.0.2.10"]'}),
        "tun.addresses[0]: '192.0.2.10' has no prefix length; write \"192.0.2.10/32\"",
    ),
    (_base(**{'["192.0.2.10/32"]': '["banana/32"]'}), "tun.addresses[0]: 'banana/32' is not an address"),
    (_base(**{"ranges = 8": "ranges = 6"}), "cluster.ranges: 6 is not a power of two"),
    (_base(**{'headroom = "256MiB"': 'headroom = "256XB"'}), "cluster.headroom: '256XB' is not a size"),
    (
        _base(**{'headroom = "256MiB"': 'headroom = "600MiB"'}),
        "cluster.headroom: headroom 629145600 bytes does not fit",
    ),
    (
        _base(**{'headroom = "256MiB"': 'headroom = "1MiB"\nhwm_margin = "2MiB"'}),
        "cluster.hwm_margin: hwm_margin=2097152",
    ),
    (_base(**{'"10.10.0.1:6080"': '"10.10.0.1"'}), "cluster.listen: '10.10.0.1' is not address:port"),
    (
        _base(**{'dead_owner = "rst"': 'dead_owner = "retry"'}),
        "cluster.dead_owner: 'retry' is not known; choose one of rst, drop",
    ),
    (_base(**{"id = 2\naddress": "id = 1\naddress"}), "cluster.peers[0].id: 1 is this node's own id"),
    (_base(**{"id = 2\naddress": "id = 9\naddress"}), "cluster.peers[0].id: 9 is above cluster.ranges=8"),
    (
        _base(**{'kind = "echo"': 'kind = "chargen"'}),
        "services[0].kind: 'chargen' is not known; choose one of echo, discard, proxy, python",
    ),
    (
        _base(**{'listen = "192.0.2.10:7"': 'listen = "192.0.2.99:7"'}),
        "services[0].listen: 192.0.2.99 is not one of tun.addresses",
    ),
    (
        _base(**{'listen = "192.0.2.10:7"': 'listen = "192.0.2.10:80"'}),
        "services[1].listen: 192.0.2.10:80 is taken by services[0]",
    ),
    (_base(**{'backend = "10.20.0.5:8080"\n': ""}), "services[1].backend: missing"),
    (_base(**{'proxy_protocol = "v2"': 'proxy_protocol = "v1"'}), "services[1].proxy_protocol: 'v1' is not supported"),
    (
        _base(**{'handler = "mypkg.app:handle"': 'handler = "mypkg.app.handle"'}),
        "services[2].handler: 'mypkg.app.handle' is not module:function",
    ),
    (_base(**{'kind = "echo"': 'kind = "echo"\nbackend = "10.0.0.1:1"'}), "services[0].backend: unknown key"),
    (_base(**{"[log]": "[log]\nlevl = 1"}), "log.levl: unknown key; did you mean 'level'?"),
    (_base(**{'format = "json"': 'format = "xml"'}), "log.format: 'xml' is not known"),
    (_base(**{"[metrics]": "[metric]"}), "metric: unknown key; did you mean 'metrics'?"),
    ("[node\nid = 1", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), MISTAKES, ids=[m for _, m in MISTAKES])
def test_each_mistake_is_one_line_naming_key_problem_and_fix(text, message):
    # Each expected message shows the key, the problem and (after "; " or ": ") the fix.
    with pytest.raises(ConfigError) as caught:
        parse(text, source="node.toml")
    line = str(caught.value)
    assert message in line
    assert "\n" not in line and ": " in line


def test_a_missing_key_file_is_reported_with_the_command_that_makes_one(tmp_path: Path):
    (tmp_path / "node.toml").write_text(EXAMPLE)
    config = load(tmp_path / "node.toml")
    with pytest.raises(ConfigError, match=r"cluster\.key_file: cannot use .*cluster\.key.*anycast-tcp keygen"):
        config.load_keys()


def test_an_unreadable_config_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read it"):
        load(tmp_path / "nope.toml")


def test_a_small_headroom_scales_the_default_high_water_margin_with_it():
    config = parse(EXAMPLE.replace('headroom = "256MiB"', 'headroom = "1MiB"'))
    assert config.cluster.hwm_margin == 256 << 10
    assert parse(EXAMPLE).cluster.hwm_margin == 64 * MiB


def test_connection_limits_for_the_node_and_each_service(tmp_path: Path):
    text = _base(
        **{
            "id = 1\n[tun]": "id = 1\nmax_connections = 5000\n[tun]",
            'listen = "192.0.2.10:7"': 'listen = "192.0.2.10:7"\nmax_connections = 100',
        }
    )
    config = parse(text, base=tmp_path)
    assert config.max_connections == 5000
    assert [s.max_connections for s in config.services][:2] == [100, None]
