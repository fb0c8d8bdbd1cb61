"""A run probes an MX host once, however many of its domains name it, and each gets the findings.

Real lab servers on loopback: two domains whose MX is one provider host with an expired
certificate, and a third on a healthy host of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio

from stspilot.check.run import CheckOptions, Probes, check_domain, check_domains
from stspilot.lab.certs import CertKind
from stspilot.lab.scenarios import Mx, Scenario, healthy
from stspilot.lab.world import Lab

pytestmark = [pytest.mark.slow]

PROVIDER = "mx.provider-shared.test"


def _customer(domain: str) -> Scenario:
    base = healthy(0)
    return replace(
        base,
        domain=domain,
        shared=False,
        mx=(Mx(PROVIDER, 10, cert=CertKind.EXPIRED),),
        policy=f"version: STSv1\nmode: enforce\nmx: {PROVIDER}\nmax_age: 604800\n",
    )


SCENARIOS = [_customer("a.shared-mx.test"), _customer("b.shared-mx.test"), healthy(1)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(SCENARIOS) as world:
        yield world


def _options(lab: Lab, **kw: object) -> CheckOptions:
    info = lab.info
    return CheckOptions(
        nameserver=info.nameserver,
        dns_port=info.dns_port,
        ca_file=info.ca_file,
        port_map=info.port_map,
        dane=False,
        **kw,  # type: ignore[arg-type]
    )


def _sessions(lab: Lab) -> int:
    return sum(host.sessions for host in lab.smtp_hosts)


@pytest.mark.asyncio(loop_scope="module")
async def test_two_domains_sharing_an_mx_probe_it_once_and_both_get_its_findings(
    lab: Lab,
) -> None:
    before = _sessions(lab)
    results = await check_domains([sc.domain for sc in SCENARIOS], options=_options(lab), workers=1)
    a, b, other = results
    # The expired certificate is refused: a second, non-validating handshake reads it. So
    # one shared host costs 2 sessions, the healthy host 1; unshared it would be 2 + 2 + 1.
    assert _sessions(lab) - before == 3
    assert "mx.cert.expired" in a.codes() and "mx.cert.expired" in b.codes()
    assert a.codes() == b.codes()
    assert "mx.cert.expired" not in other.codes()
    [mx_a], [mx_b] = a.mx, b.mx
    assert mx_a.host == mx_b.host == PROVIDER
    assert mx_a.cert_not_after == mx_b.cert_not_after and mx_a.addresses == mx_b.addresses


@pytest.mark.asyncio(loop_scope="module")
async def test_without_reuse_every_domain_probes_its_mx_hosts(lab: Lab) -> None:
    before = _sessions(lab)
    options = _options(lab, mx_probe_reuse=0.0)
    async with Probes(options) as probes:
        first = await check_domain("a.shared-mx.test", probes=probes)
        second = await check_domain("b.shared-mx.test", probes=probes)
    assert _sessions(lab) - before == 4
    assert first.codes() == second.codes()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_deadline_in_one_domain_does_not_cancel_the_shared_probe(lab: Lab) -> None:
    """The first domain gives up before the probe ends; the second still gets the probe."""
    async with Probes(_options(lab)) as probes:
        hurried = replace(_options(lab), deadline=0.001)
        late = await check_domain("a.shared-mx.test", probes=probes, options=hurried)
        assert late.deadline_hit
        result = await check_domain("b.shared-mx.test", probes=probes)
    assert not result.deadline_hit
    assert "mx.cert.expired" in result.codes()
