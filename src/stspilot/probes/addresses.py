"""Which addresses a probe may connect to in service mode: the SSRF guard, in one place.

An address is judged against the IANA special-purpose address registries (RFC 6890):

- IPv4: https://www.iana.org/assignments/iana-ipv4-special-registry/
- IPv6: https://www.iana.org/assignments/iana-ipv6-special-registry/

The most specific registry row that contains the address decides: an address in a block the
registry marks "globally reachable: False" is refused, one in a globally reachable block (or
in no block) is allowed. Addresses that embed an IPv4 address are judged by what they embed:
IPv4-mapped (``::ffff:0:0/96``), NAT64 (``64:ff9b::/96``, RFC 6052), 6to4 (``2002::/16``,
RFC 3056) and Teredo (``2001::/32``, RFC 4380: the server and the obfuscated client), so
``2002:7f00:1::`` (6to4 around 127.0.0.1) is refused like 127.0.0.1. Multicast is never a
probe target. The tables are data: a test walks every row.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SpecialBlock:
    """One row of an IANA special-purpose address registry."""

    network: IpNetwork
    name: str
    rfc: str
    global_: bool  # "Globally Reachable" in the registry
    embeds_ipv4: bool = False  # judged by the IPv4 address it carries


def _row(prefix: str, name: str, rfc: str, global_: bool, embeds: bool = False) -> SpecialBlock:
    return SpecialBlock(ipaddress.ip_network(prefix), name, rfc, global_, embeds)


# IANA IPv4 Special-Purpose Address Registry (every row, as of 2024-2025).
IPV4_SPECIAL: tuple[SpecialBlock, ...] = (
    _row("0.0.0.0/8", '"This network"', "RFC 791", False),
    _row("0.0.0.0/32", '"This host on this network"', "RFC 1122", False),
    _row("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    _row("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
    _row("127.0.0.0/8", "Loopback", "RFC 1122", False),
    _row("169.254.0.0/16", "Link Local", "RFC 3927", False),
    _row("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    _row("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False),
    _row("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
    _row("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    _row("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
    _row("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    _row("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
    _row("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
    _row("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
    _row("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    _row("192.52.193.0/24", "AMT", "RFC 7450", True),
    _row("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", False),
    _row("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    _row("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
    _row("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    _row("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
    _row("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
    _row("240.0.0.0/4", "Reserved", "RFC 1112", False),
    _row("255.255.255.255/32", "Limited Broadcast", "RFC 919", False),
)

# IANA IPv6 Special-Purpose Address Registry (every row, as of 2024-2025).
IPV6_SPECIAL: tuple[SpecialBlock, ...] = (
    _row("::1/128", "Loopback Address", "RFC 4291", False),
    _row("::/128", "Unspecified Address", "RFC 4291", False),
    _row("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False, embeds=True),
    _row("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True, embeds=True),
    _row("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", "RFC 8215", False),
    _row("100::/64", "Discard-Only Address Block", "RFC 6666", False),
    _row("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
    _row("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
    _row("2001::/32", "TEREDO", "RFC 4380", False, embeds=True),
    _row("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
    _row("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    _row("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
    _row("2001:2::/48", "Benchmarking", "RFC 5180", False),
    _row("2001:3::/32", "AMT", "RFC 7450", True),
    _row("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    _row("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", False),
    _row("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    _row("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs)", "RFC 9374", True),
    _row("2001:db8::/32", "Documentation", "RFC 3849", False),
    _row("2002::/16", "6to4", "RFC 3056", False, embeds=True),
    _row("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
    _row("3fff::/20", "Documentation", "RFC 9637", False),
    _row("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
    _row("fc00::/7", "Unique-Local", "RFC 4193", False),
    _row("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
)

# Rows an embedded IPv4 address decides, even where the registry calls the block reachable
# (NAT64 well-known prefix) or not (6to4, Teredo: a relay reaches the embedded address).
_MOST_SPECIFIC_FIRST = {
    4: tuple(sorted(IPV4_SPECIAL, key=lambda b: -b.network.prefixlen)),
    6: tuple(sorted(IPV6_SPECIAL, key=lambda b: -b.network.prefixlen)),
}


def special_block(ip: IpAddress) -> SpecialBlock | None:
    """The most specific special-purpose registry row holding ``ip``, if any."""
    for block in _MOST_SPECIFIC_FIRST[ip.version]:
        if ip in block.network:
            return block
    return None


def embedded_ipv4(
    ip: ipaddress.IPv6Address, block: SpecialBlock
) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address of an embedding block carries."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        server, client = ip.teredo  # the client is de-obfuscated by the ipaddress module
        return (server, client)
    if block.network == ipaddress.ip_network("64:ff9b::/96"):  # RFC 6052 §2.2: the last 32 bits
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return ()


@lru_cache(maxsize=4096)
def is_public(address: str) -> bool:
    """True when a probe may connect to ``address`` in service mode (see the module doc)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if "%" in address:  # a zone index: a link-scoped address whatever its digits
        return False
    return _judge(ip)


def _judge(ip: IpAddress) -> bool:
    if ip.is_multicast:
        return False
    block = special_block(ip)
    if block is None:
        return True
    if block.embeds_ipv4 and isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip, block)
        return bool(inner) and all(_judge(v4) for v4 in inner)
    return block.global_
