"""Fixtures for the anycast lab: a lab whose nodes are kernel-TCP stand-ins (the anycast address on each node's
``lo``, in these tests only, and a PatternServer behind it), and a runner for the kernel-TCP download client."""

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.lab import Lab
from tests.conftest import require

from .kernel_server import PatternServer

CLIENT = Path(__file__).resolve().parent / "client_main.py"
SERVICE_PORT = 8080


def require_lab() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(shutil.which("ip") is not None, "needs iproute2's `ip` command")


def unique_prefix() -> str:
    """A name prefix no other test run uses, so a test can look for leftovers by prefix alone."""
    return "t" + secrets.token_hex(2)


def namespace_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def put_anycast_on_lo(lab: Lab, k: int) -> None:
    """Make node ``k``'s kernel own the anycast addresses (the real node never does this: it routes them into its
    TUN)."""
    ns = lab.node_ns(k)
    ns.ip("addr", "add", f"{lab.ANYCAST_V4}/32", "dev", "lo")
    ns.ip("addr", "add", f"{lab.ANYCAST_V6}/128", "dev", "lo", "nodad")


def run_client(
    lab: Lab,
    family: int,
    *,
    nbytes: int,
    connections: int = 1,
    timeout: float = 5.0,
    port: int = SERVICE_PORT,
    deadline: float = 60,
) -> dict:
    """Run the download client in the client namespace; ``timeout`` is how long a connection may sit idle,
    ``deadline`` how long the whole run may take."""
    argv = [sys.executable, str(CLIENT), lab.anycast(family), str(port)]
    argv += ["--connections", str(connections), "--bytes", str(nbytes), "--timeout", str(timeout)]
    done = lab.client.run(argv, capture_output=True, text=True, timeout=deadline)
    assert done.stdout, f"client printed nothing (exit {done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def kernel_lab():
    """A 3-node lab with a kernel pattern server on port 8080 in every node; the route starts at node 1."""
    require_lab()
    with Lab.build(nodes=3) as lab:
        servers = []
        try:
            for k in lab.node_numbers:
                put_anycast_on_lo(lab, k)
                servers.append(PatternServer.start(lab.node_ns(k), SERVICE_PORT))
            yield lab
        finally:
            for server in servers:
                server.close()


@pytest.fixture
def lab(kernel_lab):
    """The shared kernel lab, its route put back on node 1 after the test."""
    kernel_lab.route_to(1)
    yield kernel_lab
    kernel_lab.route_to(1)
