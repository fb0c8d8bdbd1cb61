"""The lab's authoritative DNS server (UDP and TCP) built on dnspython's message classes.

It answers like a recursive resolver would for the lab's names: CNAME chains are chased within
its data, NXDOMAIN and NODATA are told apart, and named faults (SERVFAIL, silence) can be set
per name. An optional delay per answer simulates the network (the benchmark uses 20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

if TYPE_CHECKING:
    from stspilot.lab.dnssec import SignedZone

TTL = 300
MAX_CHASE = 10
RECEIVE_BUFFER = 8 * 1024 * 1024
UDP_BATCH = 256


class DnsFault(StrEnum):
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"  # never answer
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record in presentation form: ``Record("a.test", "MX", "10 mx.a.test.")``."""

    name: str
    rtype: str
    value: str


def _key(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".").lower() + ".")


def record_rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    """``value`` as a record; a TLSA record whose digest length does not fit its matching
    type (which dnspython refuses) is kept as the octets written, as a careless zone serves it
    (the ``dane-short-digest`` scenario)."""
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, rtype, value)
    except dns.exception.SyntaxError:
        if rtype != "TLSA":
            raise
        usage, selector, mtype, *data = value.split()
        octets = bytes((int(usage), int(selector), int(mtype))) + bytes.fromhex("".join(data))
        return dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.TLSA, octets)


class DnsData:
    """The lab's zone data: rrsets by (owner, type), the set of existing names, and faults."""

    def __init__(
        self,
        records: Iterable[Record],
        faults: dict[str, DnsFault] | None = None,
        signed: Iterable[SignedZone] = (),
    ):
        grouped: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rrset.RRset] = {}
        names: set[dns.name.Name] = set()
        for record in records:
            owner = _key(record.name)
            rdtype = dns.rdatatype.from_text(record.rtype)
            rdata = record_rdata(record.rtype, record.value)
            rrset = grouped.get((owner, rdtype))
            if rrset is None:
                rrset = grouped[(owner, rdtype)] = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
                rrset.update_ttl(TTL)
            rrset.add(rdata)
            # Empty non-terminals exist too (RFC 8020): _tls.example when _smtp._tls.example does.
            while len(owner) > 2 and owner not in names:
                names.add(owner)
                owner = owner.parent()
        self.rrsets = grouped
        self.names = names
        self.faults = {_key(name): DnsFault(fault) for name, fault in (faults or {}).items()}
        # DNSSEC (lab/dnssec.py): RRSIGs by (owner, covered type), served when DO is set, and
        # per signed zone its sorted NSEC owners for denial of existence.
        self.sigs: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self.zones: dict[dns.name.Name, list[dns.name.Name]] = {}
        for zone in signed:
            apex = _key(zone.apex)
            for rrset in zone.rrsets:
                if rrset.rdtype == dns.rdatatype.RRSIG:
                    self.sigs[(rrset.name, rrset.covers)] = rrset
                else:
                    grouped[(rrset.name, rrset.rdtype)] = rrset
                    names.add(rrset.name)
            owners = [name for (name, rdtype) in grouped if rdtype == dns.rdatatype.NSEC]
            self.zones[apex] = sorted(o for o in owners if o.is_subdomain(apex))

    def _zone(self, name: dns.name.Name) -> dns.name.Name | None:
        for depth in range(len(name)):
            zone = name.split(len(name) - depth)[1] if depth else name
            if zone in self.zones:
                return zone
        return None

    def _add(self, section: list[dns.rrset.RRset], rrset: dns.rrset.RRset, dnssec: bool) -> None:
        section.append(rrset)
        sig = self.sigs.get((rrset.name, rrset.rdtype)) if dnssec else None
        if sig is not None:
            section.append(sig)

    def _deny(self, response: dns.message.Message, name: dns.name.Name, nx: bool) -> None:
        """SOA and the NSEC record proving a NODATA (at ``name``) or NXDOMAIN (covering it)."""
        zone = self._zone(name)
        if zone is None:
            return
        soa = self.rrsets.get((zone, dns.rdatatype.SOA))
        if soa is not None:
            self._add(response.authority, soa, True)
        owners = self.zones[zone]
        if nx:
            below = [owner for owner in owners if owner < name]
            owner = below[-1] if below else (owners[-1] if owners else None)
        else:
            owner = name if name in owners else None
        nsec = self.rrsets.get((owner, dns.rdatatype.NSEC)) if owner is not None else None
        if nsec is not None:
            self._add(response.authority, nsec, True)

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer to ``query``, or None to stay silent (a simulated timeout)."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name, rdtype = question.name, question.rdtype
        dnssec = bool(query.ednsflags & dns.flags.DO) and bool(self.zones)
        for _ in range(MAX_CHASE):
            fault = self.faults.get(name)
            if fault is DnsFault.TIMEOUT:
                return None
            if fault is not None:
                rcode = dns.rcode.SERVFAIL if fault is DnsFault.SERVFAIL else dns.rcode.REFUSED
                response.set_rcode(rcode)
                return response
            cname = self.rrsets.get((name, dns.rdatatype.CNAME))
            if cname is not None and rdtype != dns.rdatatype.CNAME:
                self._add(response.answer, cname, dnssec)
                name = next(iter(cname)).target
                continue
            rrset = self.rrsets.get((name, rdtype))
            if rrset is not None:
                self._add(response.answer, rrset, dnssec)
            elif name not in self.names:
                response.set_rcode(dns.rcode.NXDOMAIN)
                if dnssec:
                    self._deny(response, name, nx=True)
            elif dnssec:
                self._deny(response, name, nx=False)
            return response
        response.set_rcode(dns.rcode.SERVFAIL)
        return response


def _wire(response: dns.message.Message, limit: int) -> bytes:
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # Too big for UDP: send the header with TC so the client retries over TCP.
        response.answer.clear()
        response.flags |= dns.flags.TC
        return response.to_wire()


def _parse(wire: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire)
    except Exception:  # garbage queries are dropped, like a real server does
        return None


class _UdpSocket:
    """A non-blocking UDP socket read in batches: under a burst of queries the asyncio
    datagram transport (one datagram per loop turn) answers too late and clients retry."""

    def __init__(self, server: DnsServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            except OSError:
                continue
            break
        self.loop.add_reader(sock.fileno(), self._readable)

    def _send(self, wire: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):  # a full buffer drops the answer, as UDP does
            self.sock.sendto(wire, addr)

    def _readable(self) -> None:
        for _ in range(UDP_BATCH):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.server.queries += 1
            query = _parse(data)
            if query is None:
                continue
            response = self.server.data.respond(query)
            if response is None:
                continue
            limit = max(512, query.payload) if query.edns >= 0 else 512
            wire = _wire(response, limit)
            if self.server.latency > 0:
                self.loop.call_later(self.server.latency, self._send, wire, addr)
            else:
                self._send(wire, addr)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class DnsServer:
    """UDP and TCP on one address and port; ``port=0`` picks a free port (same for both)."""

    def __init__(self, data: DnsData, *, host: str, port: int = 0, latency: float = 0.0):
        self.data = data
        self.host = host
        self.port = port
        self.latency = latency
        self.queries = 0
        self._udp: _UdpSocket | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> None:
        for _ in range(20):
            tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
            port = tcp.sockets[0].getsockname()[1]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                tcp.close()
                if self.port:
                    raise
                continue
            self._tcp, self._udp, self.port = tcp, _UdpSocket(self, sock), port
            return
        raise OSError("no free port for the lab DNS server")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                self.queries += 1
                query = _parse(await reader.readexactly(length))
                if query is None:
                    break
                response = self.data.respond(query)
                if response is None:
                    continue
                wire = _wire(response, 65535)
                if self.latency > 0:
                    await asyncio.sleep(self.latency)
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
