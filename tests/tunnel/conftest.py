"""Fixtures for the device layer: fresh network namespaces and TUN devices, each removed after the test whatever
its outcome. They need root, iproute2 and /dev/net/tun (tests.conftest.require: skip outside CI, fail in it)."""

import os
import secrets
import shutil

import pytest

from tests.conftest import require
from tunnel.netns import NetNamespace
from tunnel.tun import TunDevice


def require_netns() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces and TUN devices")
    require(shutil.which("ip") is not None, "needs iproute2's `ip` command")
    require(os.path.exists("/dev/net/tun"), "needs /dev/net/tun")


def unique_name(prefix: str = "atcp") -> str:
    return prefix + secrets.token_hex(4)


@pytest.fixture
def netns():
    require_netns()
    with NetNamespace.create() as ns:
        yield ns


@pytest.fixture
def open_tun(netns, request):
    """``open_tun(addresses, **kw)`` opens a uniquely named TUN in ``netns``, closed at teardown."""

    def opener(addresses: list[str], **kw) -> TunDevice:
        device = TunDevice.open(unique_name(), addresses=addresses, netns=netns, **kw)
        request.addfinalizer(device.close)
        return device

    return opener
