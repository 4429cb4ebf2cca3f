"""Checks on what a user hands the device layer. Each failure is one ValueError that names the problem and the fix,
raised before anything is created, so a typo never leaves half a device behind."""

import ipaddress
import re

IFNAMSIZ = 16  # <net/if.h>: an interface name holds at most IFNAMSIZ - 1 = 15 characters plus the NUL
# RFC 791: "Every internet module must be able to forward a datagram of 68 octets without further fragmentation."
MTU_MIN_IPV4 = 68
# RFC 8200 §5: "IPv6 requires that every link in the Internet have an MTU of 1280 octets or greater."
MTU_MIN_IPV6 = 1280
MTU_MAX = 65535  # the largest IPv4 total length, and the kernel's MAX_MTU for a TUN device
PREFIX_MAX = 6  # prefix + 8 hex digits + one suffix letter still fits in an interface name

# Stricter than the kernel's dev_valid_name (which bars only "/", ":", whitespace, "." and ".."): "%" would make
# the kernel pick a name from a template, and anything outside this set is a quoting hazard in `ip` commands.
_IFNAME = re.compile(r"[A-Za-z0-9_.-]+")
_PREFIX = re.compile(r"[A-Za-z0-9]+")

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_ifname(name: object, what: str = "interface name") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string like 'atcp0', got {name!r}")
    if len(name) > IFNAMSIZ - 1:
        raise ValueError(
            f"{what} {name!r} is {len(name)} characters; Linux allows at most {IFNAMSIZ - 1} (IFNAMSIZ): shorten it"
        )
    if not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"{what} {name!r} may hold only letters, digits, '_', '-' and '.': rename it")
    return name


def check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or len(prefix) > PREFIX_MAX:
        raise ValueError(
            f"name prefix {prefix!r} must be 1 to {PREFIX_MAX} letters or digits (8 random hex digits follow it and "
            f"the whole must fit a {IFNAMSIZ - 1}-character interface name): use something like 'atcp'"
        )
    return prefix


def check_string_list(values: object, what: str, example: str) -> list[str]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{what} must be a list of strings like [{example!r}], not a single string {values!r}")
    return list(values)  # type: ignore[call-overload]


def check_cidr(text: object) -> Interface:
    """An address with its prefix length, like '10.1.0.1/24' or 'fd00:1::1/64'."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(
            f"address {text!r} has no prefix length; write it in CIDR form like '10.1.0.1/24' or 'fd00:1::1/64'"
        )
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(
            f"address {text!r} is not a valid IPv4 or IPv6 address with a prefix length; "
            "write it in CIDR form like '10.1.0.1/24' or 'fd00:1::1/64'"
        ) from None


def check_route(text: object) -> Network:
    """A network prefix with no host bits, like '192.0.2.0/24' or 'fd00:2::/64'."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"route {text!r} has no prefix length; write it like '192.0.2.0/24' or 'fd00:2::/64'")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        try:
            fixed = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"route {text!r} is not a valid IPv4 or IPv6 prefix; write it like '192.0.2.0/24' or 'fd00:2::/64'"
            ) from None
        raise ValueError(f"route {text!r} has host bits set; a route is a network prefix: write '{fixed}'") from None


def check_mtu(mtu: object, *, ipv6: bool = False) -> int:
    if not isinstance(mtu, int) or isinstance(mtu, bool):
        raise ValueError(f"mtu must be an int like 1500, got {mtu!r} ({type(mtu).__name__})")
    if not MTU_MIN_IPV4 <= mtu <= MTU_MAX:
        raise ValueError(f"mtu {mtu} is out of range: use {MTU_MIN_IPV4} to {MTU_MAX} (1500 is the usual choice)")
    if ipv6 and mtu < MTU_MIN_IPV6:
        # Below 1280 the kernel silently removes IPv6 from the device, so fail here instead.
        raise ValueError(
            f"mtu {mtu} is below {MTU_MIN_IPV6}, the IPv6 minimum (RFC 8200 §5), and an IPv6 address was given: "
            f"raise the mtu to at least {MTU_MIN_IPV6} or drop the IPv6 addresses"
        )
    return mtu


def check_probability(name: str, value: object) -> float:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r} must be a probability between 0 and 1, like 0.05")
    return float(value)
