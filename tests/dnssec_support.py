"""dnspython's DNSSEC objects (made by the tests, which sign with dnspython) as the validator
reads them: through the wire, with ``probes/dnswire_signed.py``'s ``parse_dnssec_message``."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdata
import dns.rrset

from stspilot.probes.dnswire import (
    Message,
    Rdata,
    RRset,
    WireName,
)
from stspilot.probes.dnswire_signed import parse_dnssec_message, parse_rdata


def wire_name(name: dns.name.Name | WireName | str) -> WireName:
    if isinstance(name, WireName):
        return name
    if isinstance(name, str):
        name = dns.name.from_text(name)
    return WireName(tuple(label for label in name.labels if label))


def their_name(name: dns.name.Name | WireName) -> dns.name.Name:
    """A name the validator asks (``WireName``) as dnspython's, for the fakes that answer."""
    if isinstance(name, dns.name.Name):
        return name
    return dns.name.Name((*name.labels, b""))


def wire_message(message: dns.message.Message) -> Message:
    return parse_dnssec_message(message.to_wire(max_size=65535))


def wire_rrset(rrset: dns.rrset.RRset) -> RRset:
    response = dns.message.make_response(dns.message.make_query(rrset.name, rrset.rdtype))
    response.answer.append(rrset)
    (ours,) = wire_message(response).answer
    return ours


def wire_rdata(rdata: dns.rdata.Rdata) -> Rdata:
    return parse_rdata(rdata.rdtype, rdata.to_wire() or b"")
