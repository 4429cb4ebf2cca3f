"""One kernel reference and one stack of ours per session: each case opens its own connection (a fresh source
port), so they share nothing but the listener, and setting a namespace up per case would cost the time budget."""

import os

import pytest

from tests.conftest import require


def _require_root() -> None:
    require(os.geteuid() == 0 and os.path.exists("/dev/net/tun"), "needs root, network namespaces and /dev/net/tun")


@pytest.fixture(scope="session")
def linux():
    _require_root()
    from .harness import LinuxTcp

    tcp = LinuxTcp()
    try:
        yield tcp
    finally:
        tcp.close()


@pytest.fixture(scope="session")
def ours():
    _require_root()
    from .harness import OurTcp

    tcp = OurTcp()
    try:
        yield tcp
    finally:
        tcp.close()
