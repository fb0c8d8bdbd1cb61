"""The SSRF guard against the IANA special-purpose registries (issue 15): every row, the
embedded-IPv4 forms, and the two misses the attack found (100.64.0.0/10 and 6to4)."""

from __future__ import annotations

import ipaddress

import pytest

from stspilot.probes.addresses import IPV4_SPECIAL, IPV6_SPECIAL, SpecialBlock, is_public

ROWS = [*IPV4_SPECIAL, *IPV6_SPECIAL]


def samples(block: SpecialBlock) -> list[str]:
    """The first, a middle and the last address of a block, skipping any that fall in a
    more specific row (those have their own case)."""
    net = block.network
    picks = {net.network_address, net.network_address + net.num_addresses // 2, net[-1]}
    return [
        str(ip)
        for ip in sorted(picks)
        if not any(
            other is not block and other.network.prefixlen > net.prefixlen and ip in other.network
            for other in ROWS
        )
    ]


@pytest.mark.parametrize(
    "block", [b for b in ROWS if not b.embeds_ipv4], ids=lambda b: str(b.network)
)
def test_every_registry_row(block: SpecialBlock) -> None:
    """An address in a row is allowed exactly when the registry calls it globally reachable."""
    picked = samples(block)
    assert picked, f"no address of {block.network} is decided by this row"
    for address in picked:
        assert is_public(address) is block.global_, (address, block.name)


@pytest.mark.parametrize("block", [b for b in ROWS if b.embeds_ipv4], ids=lambda b: str(b.network))
def test_embedding_rows_are_judged_by_the_ipv4_inside(block: SpecialBlock) -> None:
    public, private = ipaddress.IPv4Address("8.8.8.8"), ipaddress.IPv4Address("127.0.0.1")
    prefix = int(block.network.network_address)

    def wrap(v4: ipaddress.IPv4Address) -> str:
        if str(block.network) == "2002::/16":  # 6to4: bits 16..48
            return str(ipaddress.IPv6Address(prefix | int(v4) << 80))
        if str(block.network) == "2001::/32":  # Teredo: server 8.8.4.4, client obfuscated
            server = int(ipaddress.IPv4Address("8.8.4.4")) << 64
            return str(ipaddress.IPv6Address(prefix | server | (int(v4) ^ 0xFFFFFFFF)))
        return str(ipaddress.IPv6Address(prefix | int(v4)))  # mapped, NAT64: the last 32 bits

    assert is_public(wrap(public)) is True
    assert is_public(wrap(private)) is False


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("100.64.0.1", False),  # shared address space (CGN, some cloud metadata, VPNs)
        ("100.100.100.200", False),  # a cloud metadata address inside it
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 around 169.254.169.254
        ("2002:808:808::", True),  # 6to4 around 8.8.8.8
        ("64:ff9b::a00:1", False),  # NAT64 around 10.0.0.1
        ("64:ff9b::808:808", True),
        ("::ffff:10.0.0.1", False),
        ("224.0.0.1", False),  # multicast
        ("ff02::1", False),
        ("fe80::1%eth0", False),  # a zone index
        ("1.1.1.1", True),
        ("2606:4700::1111", True),
        ("", False),
    ],
)
def test_known_cases(address: str, public: bool) -> None:
    assert is_public(address) is public
