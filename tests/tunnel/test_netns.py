"""NetNamespace and veth: work happens inside the namespace, and nothing outlives close() or a failing test."""

import os
import socket
import subprocess
import sys

import pytest

from tunnel.netns import NetNamespace, veth

from .conftest import require_netns


def namespace_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_inode_of_this_thread() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_create_makes_a_prefixed_namespace_with_loopback_up():
    require_netns()
    with NetNamespace.create() as ns:
        assert ns.name.startswith("atcp") and len(ns.name) == 12
        assert ns.name in namespace_names()
        assert "UP" in ns.ip("-o", "link", "show", "lo").split("<")[1].split(">")[0].split(",")


def test_close_removes_the_namespace_and_ends_its_processes():
    require_netns()
    ns = NetNamespace.create()
    process = ns.popen(
        [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    pid_inside = int(process.stdout.readline())
    assert pid_inside == process.pid  # `ip netns exec` execs the program: its PID is the one we will end
    assert os.stat(f"/proc/{process.pid}/ns/net").st_ino == os.stat(ns.path).st_ino
    ns.close()
    assert ns.name not in namespace_names()
    assert process.returncode is not None
    assert not os.path.exists(f"/proc/{process.pid}")
    ns.close()  # idempotent


def test_a_test_that_raises_inside_the_namespace_still_removes_it():
    require_netns()
    with pytest.raises(KeyError), NetNamespace.create() as ns:
        process = ns.popen(["sleep", "60"])
        raise KeyError("the test failed")
    assert ns.name not in namespace_names()
    assert process.returncode is not None


def test_call_inside_runs_in_the_namespace_and_returns_or_reraises(netns):
    outside = netns_inode_of_this_thread()
    assert netns.call_inside(netns_inode_of_this_thread) == os.stat(netns.path).st_ino != outside
    assert netns_inode_of_this_thread() == outside  # the caller's thread never moved
    assert netns.call_inside(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        netns.call_inside(lambda: 1 / 0)
    assert [name for _, name in netns.call_inside(socket.if_nameindex)] == ["lo"]


def test_run_executes_inside_the_namespace(netns):
    done = netns.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    assert [line.split(":")[1].strip() for line in done.stdout.splitlines()] == ["lo"]


def test_ip_failure_is_a_runtime_error_carrying_ips_message(netns):
    with pytest.raises(RuntimeError, match=r"ip -n atcp\w+ link show nosuchdev0.*failed.*nosuchdev0"):
        netns.ip("link", "show", "nosuchdev0")
    assert netns.ip("link", "show", "nosuchdev0", check=False) == ""


def test_use_after_close_is_a_value_error():
    require_netns()
    ns = NetNamespace.create()
    ns.close()
    with pytest.raises(ValueError, match="closed"):
        ns.ip("link")


def test_argv_given_as_one_string_is_a_value_error(netns):
    with pytest.raises(ValueError, match="argv must be a list"):
        netns.run("ip link")


@pytest.mark.parametrize(
    ("addr_a", "addr_b", "connect_to"),
    [("10.9.0.1/24", "10.9.0.2/24", "10.9.0.2"), ("fd00:9::1/64", "fd00:9::2/64", "fd00:9::2")],
    ids=["ipv4", "ipv6"],
)
def test_veth_joins_two_namespaces_for_kernel_to_kernel_tcp(addr_a, addr_b, connect_to):
    require_netns()
    with NetNamespace.create() as a, NetNamespace.create() as b:
        link = veth(a, b, addr_a, addr_b)
        assert link.name_a.startswith("atcp") and link.name_a[:-1] == link.name_b[:-1]
        assert link.name_a in a.ip("-o", "link", "show") and link.name_b in b.ip("-o", "link", "show")
        family = socket.AF_INET6 if ":" in connect_to else socket.AF_INET
        server = b.call_inside(socket.create_server, (connect_to, 0), family=family)
        with server:
            port = server.getsockname()[1]
            client = a.call_inside(socket.create_connection, (connect_to, port), 5)
            with client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"across the veth")
                    assert peer.recv(100) == b"across the veth"
    assert a.name not in namespace_names() and b.name not in namespace_names()


def test_veth_with_a_bad_address_creates_nothing(netns):
    before = netns.ip("-o", "link", "show")
    with pytest.raises(ValueError, match=r"'10\.9\.0\.1' has no prefix length"):
        veth(netns, netns, "10.9.0.1", "10.9.0.2/24")
    assert netns.ip("-o", "link", "show") == before


def test_bad_prefix_is_a_value_error_naming_the_fix():
    with pytest.raises(ValueError, match="name prefix 'has space' must be 1 to 6 letters or digits"):
        NetNamespace.create(prefix="has space")
    with pytest.raises(ValueError, match="use something like 'atcp'"):
        NetNamespace.create(prefix="muchtoolong")
