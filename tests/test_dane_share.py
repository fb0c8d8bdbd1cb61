"""DANE's per-host work is shared within a run, as the STARTTLS probe is: two domains whose MX
is one provider host cause one TLSA question and one A/AAAA pair for it, and both get the same
verdict. Real lab servers on loopback (signed zones, the lab's trust anchor); the lab DNS's
answer function is wrapped only to count the questions it is asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import dns.message
import dns.rdatatype
import pytest
import pytest_asyncio

from stspilot.check.run import CheckOptions, Probes, check_domain, check_domains
from stspilot.lab.scenarios import Mx, Scenario, Tlsa, healthy
from stspilot.lab.world import Lab

pytestmark = [pytest.mark.slow]

PROVIDER_ZONE = "provider-dane.test"
PROVIDER = f"mx.{PROVIDER_ZONE}"
TLSA_NAME = f"_25._tcp.{PROVIDER}."


def _customer(domain: str, *, provider: bool) -> Scenario:
    return replace(
        healthy(0),
        domain=domain,
        shared=False,
        mx=(Mx(PROVIDER, 10),),
        policy=f"version: STSv1\nmode: enforce\nmx: {PROVIDER}\nmax_age: 604800\n",
        # the provider's zone (its MX host's address and TLSA) is signed once, with one of them
        signed=(domain, PROVIDER_ZONE) if provider else (domain,),
        tlsa=(Tlsa(PROVIDER), Tlsa(PROVIDER, target="other")) if provider else (),
    )


A, B = "a.dane-share.test", "b.dane-share.test"
SCENARIOS = [_customer(A, provider=True), _customer(B, provider=False)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(SCENARIOS) as world:
        yield world


@pytest.fixture
def asked(lab: Lab) -> Iterator[Counter[tuple[str, str]]]:
    """(name, type) of every question the lab DNS answers while the test runs."""
    assert lab.dns is not None
    data = lab.dns.data
    respond = data.respond
    counts: Counter[tuple[str, str]] = Counter()

    def counting(query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        counts[(question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))] += 1
        return respond(query)

    data.respond = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        data.respond = respond  # type: ignore[method-assign]


def _options(lab: Lab, **kw: object) -> CheckOptions:
    info = lab.info
    return CheckOptions(
        nameserver=info.nameserver, dns_port=info.dns_port, ca_file=info.ca_file,
        port_map=info.port_map, trust_anchor=info.trust_anchor, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.asyncio(loop_scope="module")
async def test_two_domains_on_one_mx_host_ask_its_tlsa_once(
    lab: Lab, asked: Counter[tuple[str, str]]
) -> None:
    a, b = await check_domains([A, B], options=_options(lab), workers=1)
    assert asked[(TLSA_NAME, "TLSA")] == 1
    assert asked[(f"{PROVIDER}.", "A")] == asked[(f"{PROVIDER}.", "AAAA")] == 1
    (dane_a,), (dane_b,) = a.dane, b.dane
    assert dane_a.state.value == "match" and dane_a.dnssec == "secure"
    assert dane_a.address_dnssec == "secure"
    assert dane_a == dane_b
    dane_codes = sorted(c for c in a.codes() if c.startswith("dane."))
    assert dane_codes == sorted(c for c in b.codes() if c.startswith("dane."))


@pytest.mark.asyncio(loop_scope="module")
async def test_without_reuse_each_domain_asks(lab: Lab, asked: Counter[tuple[str, str]]) -> None:
    async with Probes(_options(lab, mx_probe_reuse=0.0)) as probes:
        a = await check_domain(A, probes=probes)
        b = await check_domain(B, probes=probes)
    assert asked[(TLSA_NAME, "TLSA")] == 2  # one each: not shared
    (dane_a,), (dane_b,) = a.dane, b.dane  # asked apart, the records may come in another order
    assert dane_a.state == dane_b.state and sorted(dane_a.records) == sorted(dane_b.records)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_deadline_in_one_domain_does_not_cancel_the_shared_lookup(
    lab: Lab, asked: Counter[tuple[str, str]]
) -> None:
    async with Probes(_options(lab)) as probes:
        late = await check_domain(A, probes=probes, options=replace(_options(lab), deadline=0.001))
        assert late.deadline_hit
        result = await check_domain(B, probes=probes)
    assert not result.deadline_hit
    assert [v.state.value for v in result.dane] == ["match"]
    assert asked[(TLSA_NAME, "TLSA")] == 1
