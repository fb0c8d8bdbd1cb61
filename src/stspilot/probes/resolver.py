"""The one DNS path: TXT, MX and address lookups over a stub resolver that reuses its sockets.

Every question stspilot asks goes through a ``Resolver``; the lab points it at its own
authoritative server through ``nameserver``/``port``. Failures come back as ``DnsStatus``
values, never exceptions, because MTA-STS treats "no record" and "could not ask" differently
(RFC 8461 §3.1 and §5.1: a failed lookup must not be read as "no policy").

Why not ``dns.asyncresolver``: it opens a new UDP socket (an asyncio datagram endpoint) per
question, which was most of the checker's DNS cost (~0.8 ms CPU a question; see
``docs/check.md``). Here questions share a few connected UDP sockets per event loop and
answers are matched to questions by message id and question section. The query is 30 bytes
we lay out directly; answers are read by ``probes.dnswire`` (why, with the figures, in its
docstring): A, AAAA, MX and TXT by ``parse_message``, the DO answers DANE validates (RRSIG,
DNSKEY, DS, NSEC, NSEC3, TLSA) by ``dnswire_signed.parse_dnssec_message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import dns.exception

from stspilot.facts import AddressLookup, DnsStatus, MxHost, MxLookup, TxtLookup
from stspilot.probes import dnswire
from stspilot.probes.dnswire import (
    AAAA,
    CLASS_IN,
    MX,
    NOERROR,
    NXDOMAIN,
    QR,
    TC,
    TXT,
    A,
    WireName,
    name_from_text,
    parse_message,
)
from stspilot.probes.dnswire import CNAME as _CNAME
from stspilot.probes.dnswire import OPT as _OPT_TYPE
from stspilot.probes.dnswire_signed import parse_dnssec_message
from stspilot.sts.names import fold_name

if TYPE_CHECKING:
    import dns.name

# CNAME chains longer than this are a loop or an attack, not a delegation (RFC 8461 §8.2).
MAX_CNAME_HOPS = 8
# EDNS(0) buffer size of the DNS flag day 2020: answers larger than this come over TCP.
EDNS_PAYLOAD = 1232
# A socket answers this many questions, then is retired: its fixed source port is one less
# thing an off-path spoofer has to guess only for a short while (with the random message id
# and the question check, as a stub resolver does).
QUESTIONS_PER_SOCKET = 1024
RECEIVE_BUFFER = 1024 * 1024
_RD, _CD = 0x0100, 0x0010
_RD_FLAGS = struct.pack("!H", _RD)
_COUNTS = struct.pack("!HHHH", 1, 0, 0, 1)  # one question, one additional record (OPT)
_OPT = b"\x00" + struct.pack("!HHIH", _OPT_TYPE, EDNS_PAYLOAD, 0, 0)
# DNSSEC questions (``query_dnssec``): DO set in the OPT TTL (RFC 3225 §3), and CD in the header
# (RFC 4035 §3.2.2) so a validating upstream hands over bogus data for us to name the fault.
_RD_CD_FLAGS = struct.pack("!H", _RD | _CD)
_OPT_DO = b"\x00" + struct.pack("!HHIH", _OPT_TYPE, EDNS_PAYLOAD, 0x8000, 0)
_T = TypeVar("_T")
# An answer, as ``dnswire.parse_message`` or ``parse_dnssec_message`` reads it.
Answer = Any


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """Where and how patiently to ask. No nameserver means the system's ``resolv.conf``."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 2.0  # per attempt at one server
    lifetime: float = 5.0  # whole question, retries included
    # Questions in flight at once; a question's clock starts only once it has a slot, so a
    # burst of thousands waits here instead of timing out together at the server.
    max_in_flight: int = 256


@dataclass(frozen=True, slots=True)
class _Answer:
    status: DnsStatus
    rdatas: tuple[object, ...] = ()
    chain: tuple[str, ...] = ()  # CNAME owners followed inside the answer
    target: str = ""  # the canonical name the answer ended at
    error: str = ""


class _Failed(Exception):
    """One attempt at one server did not give a usable answer."""

    def __init__(self, status: DnsStatus, error: str) -> None:
        super().__init__(error)
        self.status = status


def _text(name: object) -> str:
    return fold_name(str(name))


class _Channel:
    """One connected UDP socket to one server; answers go to the waiter of their message id."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        self.loop = loop
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            # Connected: the kernel drops datagrams from any other address and port.
            self.sock.connect((server, port))
        except OSError:
            self.sock.close()
            raise
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.used = 0
        self.closed = False
        loop.add_reader(self.sock.fileno(), self._readable)

    @property
    def retired(self) -> bool:
        return self.closed or self.used >= QUESTIONS_PER_SOCKET

    def ask(self, wire: bytearray) -> tuple[int, asyncio.Future[bytes]]:
        """Send ``wire`` under a fresh message id; the future gets the raw answer."""
        qid = secrets.randbits(16)
        while qid in self.waiting:
            qid = secrets.randbits(16)
        wire[0:2] = qid.to_bytes(2, "big")
        future = self.loop.create_future()
        self.waiting[qid] = future
        self.used += 1
        try:
            self.sock.send(wire)
        except BlockingIOError:
            pass  # a full send buffer loses the datagram, as the network may: retried later
        except OSError as exc:
            self.waiting.pop(qid, None)
            future.set_exception(exc)
        return qid, future

    def forget(self, qid: int) -> None:
        # Closed as soon as nothing waits: under load a socket serves many questions, and no
        # socket outlives its questions (nor needs an owner to close it, nor a timer).
        self.waiting.pop(qid, None)
        if not self.waiting:
            self.close()

    def _readable(self) -> None:
        # Many answers per wake-up: under a burst one datagram per loop turn falls behind.
        for _ in range(256):
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP unreachable on a connected socket: nobody listens
                for future in self.waiting.values():
                    if not future.done():
                        future.set_exception(exc)
                return
            if len(data) < 12:
                continue
            waiter = self.waiting.get(int.from_bytes(data[:2], "big"))
            if waiter is not None and not waiter.done():
                waiter.set_result(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # the loop may already be closed
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for future in self.waiting.values():
            if not future.done():
                future.cancel()


class _Slots:
    """A semaphore for the questions in flight whose release hands the slot straight to the
    next waiter. ``asyncio.Semaphore`` (3.11) marks a waiter woken but leaves it queued until
    it runs, so each release in a burst walked past every waiter woken before it: with
    hundreds of questions queued in a bulk check that was ~5 % of the checker's CPU."""

    __slots__ = ("_free", "_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self._loop = loop
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to it: ``_free`` stays as it is
                return
        self._free += 1


async def concurrently(first: Awaitable[_T], *rest: Awaitable[_T]) -> list[_T]:
    """``asyncio.gather(first, *rest)`` with ``first`` run in the calling task: one task
    fewer (a task and its callbacks cost ~20 µs of CPU, and a bulk check made ~15 a domain).
    Started in order, so ``first`` sends first; if it fails or the caller is cancelled, the
    others are cancelled (gather would leave them running)."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in rest]
    try:
        results = [await first]
        for task in tasks:
            results.append(await task)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return results


def _expire(future: asyncio.Future[bytes]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Expiry:
    """The time limits of the questions in flight, oldest first, under one loop timer.

    Questions share one per-attempt limit, so their deadlines mostly come in the order they
    were asked: those go in a queue, and the timer is armed for the oldest one still waiting
    (answered ones are skipped, never cancelled). A deadline earlier than the newest (the end
    of a question's lifetime) gets its own timer. Each question still fails at its deadline;
    the loop's timer heap no longer holds one (Python-compared) entry per question, ~7 a
    checked domain, each pushed, cancelled and popped.
    """

    __slots__ = ("_armed", "_loop", "_queue", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[tuple[float, asyncio.Future[bytes]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0.0

    def add(self, when: float, future: asyncio.Future[bytes]) -> asyncio.TimerHandle | None:
        """Fail ``future`` with ``TimeoutError`` at ``when`` unless done by then; a timer
        handle to cancel when it has one of its own."""
        queue = self._queue
        if queue and when < queue[-1][0]:
            return self._loop.call_at(when, _expire, future)
        queue.append((when, future))
        if self._timer is None:
            self._arm(when)
        return None

    def _arm(self, when: float) -> None:
        self._armed = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        queue = self._queue
        due = max(self._armed, self._loop.time())
        while queue and (queue[0][0] <= due or queue[0][1].done()):
            _expire(queue.popleft()[1])  # a no-op for the answered
        if queue:
            self._arm(queue[0][0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


def _query(name: WireName | dns.name.Name, rdtype: int, *, dnssec: bool = False) -> bytearray:
    """A recursive query with EDNS(0); its id (the first two bytes) is set when it is sent."""
    question = bytes(name.to_wire() or b"") + struct.pack("!HH", rdtype, CLASS_IN)
    if dnssec:
        return bytearray(b"\0\0" + _RD_CD_FLAGS + _COUNTS + question + _OPT_DO)
    return bytearray(b"\0\0" + _RD_FLAGS + _COUNTS + question + _OPT)


RESOLV_CONF = "/etc/resolv.conf"


def _system_nameservers(path: str = RESOLV_CONF) -> tuple[str, ...]:
    """The ``nameserver`` lines of resolv.conf, as dnspython's ``Resolver`` reads them (read
    here: importing ``dns.resolver`` cost ~40 ms of every check before its first packet)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read(1 << 20).splitlines()
    except OSError as exc:
        raise OSError(f"no system DNS configuration: cannot open {path}: {exc}") from exc
    servers = []
    for line in lines:
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0] == "nameserver" and not line.startswith(("#", ";")):
            servers.append(tokens[1])
    if not servers:
        raise OSError(f"no system DNS configuration: no nameservers in {path}")
    return tuple(dict.fromkeys(servers))


class Resolver:
    """An async stub resolver with typed outcomes; share one per process (or event loop)."""

    def __init__(self, config: ResolverConfig | None = None) -> None:
        self.config = config or ResolverConfig()
        self._nameservers = self.config.nameservers
        self._channels: dict[str, _Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: _Slots | None = None
        self._expiry: _Expiry | None = None

    async def aclose(self) -> None:
        """Close the sockets (they also close themselves once idle and retired)."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        if self._expiry is not None:
            self._expiry.close()

    def _channel(self, server: str) -> _Channel:
        channel = self._channels.get(server)
        if channel is None or channel.retired:
            if channel is not None and not channel.waiting:
                channel.close()
            assert self._loop is not None
            channel = self._channels[server] = _Channel(self._loop, server, self.config.port)
        return channel

    def _bind_loop(self) -> _Slots:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._slots is None:
            for channel in self._channels.values():  # sockets of a previous loop
                channel.close()
            self._channels.clear()
            if self._expiry is not None:
                self._expiry.close()
            self._loop = loop
            self._slots = _Slots(loop, self.config.max_in_flight)
            self._expiry = _Expiry(loop)
        return self._slots

    async def _udp(self, server: str, wire: bytearray, limit: float, parse: _Parse) -> Answer:
        try:
            channel = self._channel(server)
        except OSError as exc:  # no route, no IPv6, out of descriptors
            raise _Failed(DnsStatus.ERROR, f"{server}: {exc.strerror or exc}") from exc
        qid, future = channel.ask(wire)
        # The answer's future itself fails at the limit: one timer, no timeout scope per question.
        assert self._expiry is not None  # bound with the slots (``_bind_loop``)
        timer = self._expiry.add(channel.loop.time() + limit, future)
        try:
            data = await future
        except TimeoutError as exc:
            raise _Failed(DnsStatus.TIMEOUT, f"no answer from {server} in {limit:g} s") from exc
        except OSError as exc:
            raise _Failed(DnsStatus.ERROR, f"{server}: {exc.strerror or exc}") from exc
        finally:
            if timer is not None:
                timer.cancel()
            channel.forget(qid)
        return _parse(data, server, parse)

    async def _tcp(self, server: str, wire: bytearray, limit: float, parse: _Parse) -> Answer:
        """The same question over TCP (RFC 7766), when the UDP answer was truncated."""
        wire[0:2] = secrets.randbits(16).to_bytes(2, "big")
        writer = None
        try:
            async with asyncio.timeout(limit):
                reader, writer = await asyncio.open_connection(server, self.config.port)
                writer.write(struct.pack("!H", len(wire)) + wire)
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
        except TimeoutError as exc:
            raise _Failed(DnsStatus.TIMEOUT, f"no TCP answer from {server}") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise _Failed(DnsStatus.ERROR, f"{server} over TCP: {exc}") from exc
        finally:
            if writer is not None:
                writer.transport.abort()
        if data[:2] != wire[:2]:
            raise _Failed(DnsStatus.ERROR, f"{server} over TCP answered another question")
        return _parse(data, server, parse)

    async def _exchange(self, name: WireName, rdtype: int) -> _Answer:
        message = await self._message(name, rdtype, _query(name, rdtype), parse_message)
        if isinstance(message, _Answer):
            return message
        return _interpret(message, name, rdtype)

    async def _message(
        self, name: WireName | dns.name.Name, rdtype: int, wire: bytearray, parse: _Parse
    ) -> Answer:
        """Ask the servers in turn until one answers NOERROR/NXDOMAIN or the lifetime ends."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        end = loop.time() + cfg.lifetime
        servers = list(self._nameservers)
        failures: list[_Failed] = []
        while servers:
            for server in list(servers):
                remaining = end - loop.time()
                if remaining <= 0:
                    return _Answer(DnsStatus.TIMEOUT, error=_says(failures, "lifetime ended"))
                try:
                    message = await self._udp(server, wire, min(cfg.timeout, remaining), parse)
                    if message.flags & TC:
                        message = await self._tcp(server, wire, max(end - loop.time(), 0.05), parse)
                    _check_question(message, name, rdtype)
                except _Failed as failed:
                    failures.append(failed)
                    if failed.status is not DnsStatus.TIMEOUT:
                        servers.remove(server)  # answered garbage or refused: ask it no more
                    continue
                rcode = message.rcode()
                if rcode in (NOERROR, NXDOMAIN):
                    return message
                # SERVFAIL, REFUSED, ...: this server cannot help (RFC 8461 §5.1: not "none")
                failures.append(
                    _Failed(DnsStatus.SERVFAIL, f"{server} answered {dnswire.rcode_text(rcode)}")
                )
                servers.remove(server)
        if failures and all(f.status is DnsStatus.SERVFAIL for f in failures):
            return _Answer(DnsStatus.SERVFAIL, error=_says(failures, "no server answered"))
        if not failures:
            return _Answer(DnsStatus.ERROR, error="no nameserver configured")
        return _Answer(DnsStatus.ERROR, error=_says(failures, "no server answered"))

    async def query_dnssec(
        self, name: WireName | dns.name.Name, rdtype: int
    ) -> dnswire.Message | tuple[DnsStatus, str]:
        """The whole answer to a DO+CD question (RRSIGs, NSEC/NSEC3, authority section), for
        ``probes.dane`` to validate; a failed question is ``(status, error)``, never raised."""
        slots = self._bind_loop()
        try:
            if not self._nameservers:
                self._nameservers = _system_nameservers()
        except OSError as exc:
            return DnsStatus.ERROR, str(exc)
        await slots.acquire()
        try:
            wire = _query(name, rdtype, dnssec=True)
            message = await self._message(name, rdtype, wire, parse_dnssec_message)
        finally:
            slots.release()
        if isinstance(message, _Answer):
            return message.status, message.error
        answer: dnswire.Message = message
        return answer

    async def _ask(self, name: str, rdtype: int) -> _Answer:
        slots = self._bind_loop()
        try:
            qname = name_from_text(name)
            if not self._nameservers:
                self._nameservers = _system_nameservers()
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return _Answer(DnsStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
        await slots.acquire()
        try:
            return await self._exchange(qname, rdtype)
        finally:
            slots.release()

    async def _follow(self, name: str, rdtype: int) -> _Answer:
        """Ask, and keep asking at the CNAME target when a server stopped mid-chain."""
        chain: list[str] = []
        current = name
        for _ in range(MAX_CNAME_HOPS):
            answer = await self._ask(current, rdtype)
            chain.extend(answer.chain)
            target = answer.target or current
            if answer.status is DnsStatus.NODATA and answer.chain and target != current:
                # The server gave us the CNAME but not what it points to (another zone).
                current = target
                continue
            return _Answer(answer.status, answer.rdatas, tuple(chain), target, answer.error)
        return _Answer(DnsStatus.ERROR, chain=tuple(chain), error="CNAME chain too long")

    async def lookup_txt(self, name: str) -> TxtLookup:
        """TXT records at ``name``, each record's character-strings kept apart (RFC 8461 §3.1)."""
        name = _text(name)
        answer = await self._follow(name, TXT)
        records = tuple(tuple(rdata.strings) for rdata in answer.rdatas)  # type: ignore[attr-defined]
        return TxtLookup(name, answer.status, records, answer.chain, answer.error)

    async def lookup_mx(self, name: str) -> MxLookup:
        """MX hosts sorted by preference then name; a null MX (RFC 7505) is ``MxHost(0, "")``."""
        name = _text(name)
        return _mx_lookup(name, await self._follow(name, MX))

    async def lookup_mx_dnssec(
        self, name: str
    ) -> tuple[MxLookup, dnswire.Message | tuple[DnsStatus, str]]:
        """``lookup_mx`` and the whole DO+CD answer it came from, in one question (DANE
        validates that answer: RFC 7672 §2.2.1); the same ``MxLookup`` as ``lookup_mx``."""
        name = _text(name)
        try:
            wire_name = name_from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return MxLookup(name, DnsStatus.ERROR, error=error), (DnsStatus.ERROR, error)
        message = await self.query_dnssec(wire_name, MX)
        if isinstance(message, tuple):
            return MxLookup(name, message[0], error=message[1]), message
        answer = _interpret(message, wire_name, MX)
        if answer.status is DnsStatus.NODATA and answer.chain:  # a CNAME into another zone
            return await self.lookup_mx(name), message
        return _mx_lookup(name, answer), message

    async def lookup_address(self, name: str) -> AddressLookup:
        """A and AAAA at once; OK when either has an address, else the more telling failure."""
        name = _text(name)
        v4, v6 = await concurrently(self._follow(name, A), self._follow(name, AAAA))
        return _address_lookup(name, v4, v6)

    async def lookup_address_dnssec(
        self, name: str
    ) -> tuple[AddressLookup, tuple[dnswire.Message | tuple[DnsStatus, str], ...]]:
        """``lookup_address`` and the whole DO+CD answers (A, AAAA) it came from, for DANE to
        validate (RFC 7672 §2.2.2), in the same two questions."""
        name = _text(name)
        try:
            wire_name = name_from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return AddressLookup(name, DnsStatus.ERROR, error=error), ()
        replies = await concurrently(
            self.query_dnssec(wire_name, A), self.query_dnssec(wire_name, AAAA)
        )
        v4, v6 = (
            _Answer(r[0], error=r[1]) if isinstance(r, tuple) else _interpret(r, wire_name, rdtype)
            for r, rdtype in zip(replies, (A, AAAA), strict=True)
        )
        if any(a.status is DnsStatus.NODATA and a.chain for a in (v4, v6)):  # CNAME elsewhere
            return await self.lookup_address(name), tuple(replies)
        return _address_lookup(name, v4, v6), tuple(replies)


def _address_lookup(name: str, v4: _Answer, v6: _Answer) -> AddressLookup:
    addresses = tuple(
        str(rdata.address)  # type: ignore[attr-defined]
        for rdata in (*v4.rdatas, *v6.rdatas)
    )
    if addresses:
        return AddressLookup(name, DnsStatus.OK, addresses)
    # NXDOMAIN on either side means the name does not exist; otherwise report the failure
    # of the A question, or the AAAA one if A was merely empty.
    for status in (DnsStatus.NXDOMAIN, DnsStatus.SERVFAIL, DnsStatus.TIMEOUT, DnsStatus.ERROR):
        for answer in (v4, v6):
            if answer.status is status:
                return AddressLookup(name, status, (), answer.error)
    return AddressLookup(name, DnsStatus.NODATA)


def _mx_lookup(name: str, answer: _Answer) -> MxLookup:
    hosts = sorted(
        {
            MxHost(int(rdata.preference), _text(rdata.exchange))  # type: ignore[attr-defined]
            for rdata in answer.rdatas
        },
        key=lambda mx: (mx.preference, mx.host),
    )
    return MxLookup(name, answer.status, tuple(hosts), answer.error)


_Parse = Callable[[bytes], Answer]


def _parse(data: bytes, server: str, parse: _Parse) -> Answer:
    try:
        message = parse(data)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError) as exc:
        raise _Failed(DnsStatus.ERROR, f"{server} sent a malformed answer: {exc}") from exc
    if not message.flags & QR:
        raise _Failed(DnsStatus.ERROR, f"{server} sent a query, not an answer")
    return message


def _labels_key(name: WireName | dns.name.Name) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in name.labels if label)


def _check_question(message: Answer, name: WireName | dns.name.Name, rdtype: int) -> None:
    """The answer must repeat our question (RFC 5452 §3): else it answers someone else."""
    if len(message.question) != 1:
        raise _Failed(DnsStatus.ERROR, "answer without our question")
    question = message.question[0]
    if (
        question.rdtype != rdtype
        or question.rdclass != CLASS_IN
        or _labels_key(question.name) != _labels_key(name)
    ):
        raise _Failed(DnsStatus.ERROR, "answer to another question")


def _interpret(message: Answer, name: WireName | dns.name.Name, rdtype: int) -> _Answer:
    """Follow the CNAME chain inside the answer section to the records asked for."""
    chain: list[str] = []
    current = name
    for _ in range(MAX_CNAME_HOPS * 2):
        cname = None
        for rrset in message.answer:
            if rrset.name != current or rrset.rdclass != CLASS_IN:
                continue
            if rrset.rdtype == rdtype:
                return _Answer(DnsStatus.OK, tuple(rrset), tuple(chain), _text(current))
            if rrset.rdtype == _CNAME:
                cname = rrset
        if cname is None:
            break
        chain.append(_text(current))
        current = next(iter(cname)).target
    else:
        return _Answer(DnsStatus.ERROR, chain=tuple(chain), error="CNAME chain too long")
    if message.rcode() == NXDOMAIN:
        error = f"the DNS query name does not exist: {_text(current)}"
        return _Answer(DnsStatus.NXDOMAIN, chain=tuple(chain), target=_text(current), error=error)
    return _Answer(DnsStatus.NODATA, chain=tuple(chain), target=_text(current))


def _says(failures: list[_Failed], default: str) -> str:
    texts = list(dict.fromkeys(str(f) for f in failures))
    return "; ".join(texts[-3:])[:300] or default
