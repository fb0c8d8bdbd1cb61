"""The RFC 2136 provider: DNS UPDATE signed with TSIG (RFC 8945), sent to the zone's primary.

Works with BIND, Knot, PowerDNS and most self-hosted authoritative servers. One UPDATE per
change, over TCP (RFC 2136 §7.8, checklist G2.5), whose prerequisites are the RRset exactly as
last read and "no CNAME here" (compare-and-swap, G1.7-G1.10), so a replacement is atomic and a
retried or replayed message cannot undo a newer change (G2.6). The reply's TSIG is checked
before its RCODE is believed, and an unsigned NOTAUTH is reported as such (RFC 8945 §5.4, G4.9).

Reads go to the same server with recursion off and must be authoritative (AA).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update

from stspilot.errors import ConfigError, PublishError
from stspilot.publish.providers import TxtChange, TxtSet, split_txt

# RFC 8945 §6: hmac-sha256 is mandatory to implement and the recommended choice; sha1 must be
# implemented but is not recommended; HMAC-MD5 must not be used (checklist G4.2).
ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
}
# RFC 8945 §3, §5.2: the TSIG Error field (dns.rcode.to_text would print BADVERS for 16).
TSIG_ERRORS = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}
MAX_REPLY = 65_535


@dataclass(frozen=True, slots=True)
class TsigKey:
    """A TSIG key; the secret never appears in ``repr`` (logs, tracebacks, the journal)."""

    name: str
    secret: str = field(repr=False)  # base64, as ``keymgr``/``tsig-keygen`` print it
    algorithm: str = "hmac-sha256"

    def __post_init__(self) -> None:
        if self.algorithm.lower() not in ALGORITHMS:
            raise ConfigError(
                f"TSIG algorithm {self.algorithm!r} is not allowed; use hmac-sha256 "
                "(RFC 8945 §6: MD5 must not be used, SHA-1 is not recommended)"
            )
        try:
            dns.tsigkeyring.from_text({self.name: self.secret})
        except (ValueError, dns.exception.DNSException) as exc:
            raise ConfigError(f"TSIG key {self.name}: the secret is not base64 ({exc})") from None


@dataclass(frozen=True, slots=True)
class Rfc2136Config:
    zone: str  # the zone holding the records (its closest enclosing SOA; G1.2)
    server: str  # the primary's address (RFC 2136 §4.3: try the primary first; G2.7)
    port: int = 53
    key: TsigKey | None = None
    timeout: float = 10.0


def _rdata(strings: tuple[bytes, ...]) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)


class Rfc2136Provider:
    """Dynamic update with TSIG to one primary; see the module docstring."""

    def __init__(self, config: Rfc2136Config) -> None:
        self.config = config
        self.zone = dns.name.from_text(config.zone)
        key = config.key
        self._keyring = dns.tsigkeyring.from_text({key.name: key.secret}) if key else None
        self._keyname = dns.name.from_text(key.name) if key else None
        self._algorithm = ALGORITHMS[key.algorithm.lower()] if key else dns.tsig.default_algorithm
        # RFC 8945 §5.2.3: servers may answer an earlier Time Signed under one key with
        # BADTIME, so updates under one key go one at a time (checklist G4.10).
        self._lock = asyncio.Lock()

    @property
    def label(self) -> str:
        key = f", key {self.config.key.name}" if self.config.key else ", no TSIG"
        return f"rfc2136 {self.config.server}:{self.config.port} zone {self.zone}{key}"

    async def aclose(self) -> None:
        """Nothing is kept open: each message is its own TCP connection."""

    def _in_zone(self, name: str) -> dns.name.Name:
        owner = dns.name.from_text(name)
        if not owner.is_subdomain(self.zone):
            # RFC 2136 §3.1, §3.4.1: every name must lie in the Zone section's zone (G1.1).
            raise ConfigError(f"{name} is not in the configured zone {self.zone}")
        return owner

    async def _exchange(self, message: dns.message.Message, step: str) -> bytes:
        try:
            wire = message.to_wire()
        except dns.exception.TooBig:
            raise PublishError(
                "the update does not fit one DNS message (64 KiB): use smaller batches",
                step=step,
                answer="too big",
            ) from None
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.timeout):
                reader, writer = await asyncio.open_connection(cfg.server, cfg.port)
                try:
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    return await reader.readexactly(size)
                finally:
                    writer.close()
        except TimeoutError:
            raise PublishError(
                f"{self.label}: no answer within {cfg.timeout:g}s",
                step=step,
                answer="timeout",
            ) from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise PublishError(
                f"{self.label}: {exc.__class__.__name__}: {exc}", step=step, answer="unreachable"
            ) from None

    async def read_txt(self, name: str) -> TxtSet:
        owner = self._in_zone(name)
        step = f"read {owner} TXT"
        query = dns.message.make_query(owner, dns.rdatatype.TXT)
        query.flags &= ~dns.flags.RD
        cfg = self.config
        try:
            # UDP, and TCP when the answer is truncated; reads are idempotent (RFC 2136 §7.8
            # asks for TCP only where a retry could change the outcome: updates).
            reply, _ = await dns.asyncquery.udp_with_fallback(
                query, cfg.server, port=cfg.port, timeout=cfg.timeout
            )
        except dns.exception.Timeout:
            raise PublishError(
                f"{self.label}: no answer within {cfg.timeout:g}s", step=step, answer="timeout"
            ) from None
        except (OSError, dns.exception.DNSException) as exc:
            raise PublishError(
                f"{self.label}: {exc.__class__.__name__}: {exc}", step=step, answer="unreachable"
            ) from None
        return txt_from_reply(reply, owner, label=self.label, step=step)

    async def write_txt(self, change: TxtChange, current: TxtSet) -> None:
        await self.write_many([(change, current)])

    async def write_many(self, changes: Sequence[tuple[TxtChange, TxtSet]]) -> None:
        """Several replacements in ONE update: all or nothing (RFC 2136 §3.7, checklist G1.6),
        each with its own compare-and-swap prerequisites; for bulk ``id`` bumps of hosted
        domains, whose records all live in one delegation zone."""
        if not changes:
            return
        update = dns.update.UpdateMessage(
            self.zone, keyring=self._keyring, keyname=self._keyname, keyalgorithm=self._algorithm
        )
        for change, current in changes:
            self._add_change(update, change, current)
        first = changes[0][0]
        step = f"dns {first.label}" + (f" and {len(changes) - 1} more" if len(changes) > 1 else "")
        async with self._lock:
            data = await self._exchange(update, step)
        self._check_reply(data, update, step)

    def _add_change(
        self, update: dns.update.UpdateMessage, change: TxtChange, current: TxtSet
    ) -> None:
        owner = self._in_zone(change.name)
        # Prerequisites (RFC 2136 §2.4, all TTL 0): the RRset is exactly what we read, or absent
        # when we read nothing (G1.9); and no CNAME stands at the name (G1.10).
        if current.records:
            update.present(owner, *(_rdata(r) for r in current.records))
        else:
            update.absent(owner, dns.rdatatype.TXT)
        update.absent(owner, dns.rdatatype.CNAME)
        # Updates: delete our old record(s) by exact RDATA (same string split, G1.8), add the new.
        for record in current.owned(change.prefix):
            update.delete(owner, _rdata(record))
        if change.value is not None:
            # Every record of an RRset carries one TTL (RFC 2136 §7.12, G1.11).
            ttl = current.ttl if current.others(change.prefix) else change.ttl
            update.add(owner, ttl, _rdata(split_txt(change.value)))

    def _check_reply(self, data: bytes, request: dns.message.Message, step: str) -> None:
        try:
            raw = dns.message.from_wire(data, keyring=False)
        except dns.exception.DNSException as exc:
            raise PublishError(f"{self.label}: bad reply ({exc})", step=step) from None
        rcode = raw.rcode()
        tsig_error = raw.tsig_error if raw.had_tsig else 0
        if tsig_error:
            # RFC 8945 §5.2, §5.4: BADKEY/BADSIG replies are unsigned; BADTIME carries the
            # server's clock. None is retried blindly (G4.8).
            key = self.config.key
            why = {
                17: f"the server does not know key {key.name if key else ''} with this algorithm",
                16: "the key's secret is wrong (the MAC did not verify)",
                18: "the clocks differ by more than the fudge (fix time sync; 300 s allowed)",
            }.get(tsig_error, "")
            name = TSIG_ERRORS.get(tsig_error, str(tsig_error))
            raise PublishError(
                f"{self.label} refused the update: TSIG {name}: {why}",
                step=step,
                answer=f"NOTAUTH TSIG {name}",
            )
        if self._keyring is not None:
            if not raw.had_tsig:
                # An unsigned reply may be forged (RFC 8945 §5.4, §10; G4.9): never a success.
                answer = dns.rcode.to_text(rcode)
                hint = (
                    " (unsigned: the server may not serve this zone, or the key is unknown)"
                    if rcode == dns.rcode.NOTAUTH
                    else ""
                )
                raise PublishError(
                    f"{self.label} answered {answer} without a TSIG signature{hint}",
                    step=step,
                    answer=f"{answer} unsigned",
                )
            try:
                dns.message.from_wire(data, keyring=self._keyring, request_mac=request.mac)
            except (dns.exception.DNSException, dns.tsig.PeerError) as exc:
                raise PublishError(
                    f"{self.label}: the reply's TSIG does not verify ({exc})",
                    step=step,
                    answer="reply TSIG invalid",
                ) from None
        if rcode == dns.rcode.NOERROR:
            return
        answer = dns.rcode.to_text(rcode)
        raise PublishError(
            f"{self.label} refused the update: {answer}: {_RCODE_MEANING.get(rcode, '')}",
            step=step,
            answer=answer,
        )


# RFC 2136 §2.2, §3 (checklist G2.1-G2.3).
_RCODE_MEANING = {
    dns.rcode.REFUSED: "the server's policy does not allow this key to change this name",
    dns.rcode.NOTAUTH: "the server is not authoritative for the zone",
    dns.rcode.NOTZONE: "the name is outside the zone",
    dns.rcode.NXRRSET: "the record changed since it was read; nothing was written",
    dns.rcode.YXRRSET: "a record exists that was expected absent; nothing was written",
    dns.rcode.YXDOMAIN: "the name is in use; nothing was written",
    dns.rcode.NXDOMAIN: "the name does not exist; nothing was written",
    dns.rcode.SERVFAIL: "the server failed; the whole update was undone",
    dns.rcode.NOTIMP: "the server does not support dynamic update",
    dns.rcode.FORMERR: "the server found the message malformed",
}


def txt_from_reply(
    reply: dns.message.Message, owner: dns.name.Name, *, label: str, step: str
) -> TxtSet:
    """The TXT RRset (or CNAME) at ``owner`` in an authoritative reply; ``PublishError`` for a
    reply that is not authoritative or not an answer."""
    rcode = reply.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise PublishError(
            f"{label} answered {dns.rcode.to_text(rcode)} for {owner} TXT",
            step=step,
            answer=dns.rcode.to_text(rcode),
        )
    if not reply.flags & dns.flags.AA:
        raise PublishError(
            f"{label} is not authoritative for {owner} (no AA bit)", step=step, answer="not AA"
        )
    name = owner.to_text()
    for rrset in reply.answer:
        if rrset.name == owner and rrset.rdtype == dns.rdatatype.CNAME:
            return TxtSet(name, ttl=rrset.ttl, cname=rrset[0].target.to_text())
        if rrset.name == owner and rrset.rdtype == dns.rdatatype.TXT:
            records = tuple(tuple(rd.strings) for rd in rrset)
            return TxtSet(name, records, ttl=rrset.ttl)
    return TxtSet(name)
