"""Bad user input gets one ValueError that names the problem and the fix, before anything is created (so these
need no root: nothing reaches the kernel)."""

import re

import pytest

from tunnel.memory import MemoryDevice
from tunnel.tun import TunDevice

BAD_TUN_ARGUMENTS = [
    pytest.param(
        {"name": "atcp0123456789ab"},
        "TUN name 'atcp0123456789ab' is 16 characters; Linux allows at most 15 (IFNAMSIZ): shorten it",
        id="name-too-long",
    ),
    pytest.param({"name": ""}, "TUN name must be a non-empty string like 'atcp0', got ''", id="name-empty"),
    pytest.param(
        {"name": "atcp/0"},
        "TUN name 'atcp/0' may hold only letters, digits, '_', '-' and '.': rename it",
        id="name-slash",
    ),
    pytest.param({"name": "tun%d"}, "TUN name 'tun%d' may hold only letters, digits", id="name-template"),
    pytest.param(
        {"addresses": ["10.1.0.300/24"]},
        "address '10.1.0.300/24' is not a valid IPv4 or IPv6 address with a prefix length; "
        "write it in CIDR form like '10.1.0.1/24' or 'fd00:1::1/64'",
        id="address-octet",
    ),
    pytest.param(
        {"addresses": ["10.1.0.1"]},
        "address '10.1.0.1' has no prefix length; write it in CIDR form like '10.1.0.1/24'",
        id="address-no-prefix",
    ),
    pytest.param(
        {"addresses": ["10.1.0.1/33"]}, "address '10.1.0.1/33' is not a valid IPv4 or IPv6", id="address-prefix-33"
    ),
    pytest.param(
        {"addresses": ["fd00:1::g/64"]}, "address 'fd00:1::g/64' is not a valid IPv4 or IPv6", id="address-ipv6"
    ),
    pytest.param(
        {"routes": ["192.0.2.1/24"]},
        "route '192.0.2.1/24' has host bits set; a route is a network prefix: write '192.0.2.0/24'",
        id="route-host-bits",
    ),
    pytest.param({"routes": ["192.0.2.0"]}, "route '192.0.2.0' has no prefix length", id="route-no-prefix"),
    pytest.param(
        {"routes": ["192.0.2.0/40"]}, "route '192.0.2.0/40' is not a valid IPv4 or IPv6 prefix", id="route-invalid"
    ),
    pytest.param({"mtu": 67}, "mtu 67 is out of range: use 68 to 65535", id="mtu-too-small"),
    pytest.param({"mtu": 65536}, "mtu 65536 is out of range: use 68 to 65535", id="mtu-too-big"),
    pytest.param({"mtu": "1500"}, "mtu must be an int like 1500, got '1500' (str)", id="mtu-string"),
    pytest.param(
        {"mtu": 1279, "addresses": ["fd00:1::1/64"]},
        "mtu 1279 is below 1280, the IPv6 minimum (RFC 8200 §5), and an IPv6 address was given: "
        "raise the mtu to at least 1280 or drop the IPv6 addresses",
        id="mtu-below-ipv6-minimum",
    ),
    pytest.param(
        {"addresses": "10.1.0.1/24"},
        "addresses must be a list of strings like ['10.1.0.1/24'], not a single string '10.1.0.1/24'",
        id="addresses-one-string",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_TUN_ARGUMENTS)
def test_bad_tun_arguments_are_one_clear_value_error(kwargs, message):
    arguments = {"name": "atcp0", "addresses": ["10.1.0.1/24"]} | kwargs
    name = arguments.pop("name")
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        TunDevice.open(name, **arguments)
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # one line, no chain


@pytest.mark.parametrize(
    ("mtu", "message"),
    [(0, "mtu 0 is out of range: use 68 to 65535"), (None, "mtu must be an int like 1500, got None (NoneType)")],
)
def test_bad_memory_device_mtu_is_a_value_error(mtu, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MemoryDevice.pair(mtu=mtu)


def test_bad_memory_device_capacity_is_a_value_error():
    with pytest.raises(ValueError, match="capacity 0 must be a positive number of packets"):
        MemoryDevice.pair(capacity=0)
