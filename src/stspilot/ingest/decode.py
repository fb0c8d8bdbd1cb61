"""Bytes to report payloads: sniff JSON, gzip or e-mail, and read files, mboxes and Maildirs.

``extract_reports`` turns one unit of input (a file, a message, an HTTP body) into the JSON texts
it carries; ``iter_sources`` turns a path into such units. Parsing the JSON is
``stspilot.tlsrpt.reports.parse_report``'s job; storing it is the store's.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

from stspilot.errors import LimitExceeded, ReportError
from stspilot.ingest.mail import (
    Envelope,
    HeaderSource,
    envelope_deviations,
    fast_report_parts,
    read_envelope,
    report_parts,
)
from stspilot.tlsrpt.reports import Deviation, fast_pickle
from stspilot.tlsrpt.schema import DEFAULT_LIMITS, DEVIATIONS, Limits

__all__ = [
    "Envelope",
    "Extracted",
    "Source",
    "envelope_deviations",
    "extract_reports",
    "gunzip",
    "is_mbox",
    "iter_files",
    "iter_mbox",
    "iter_sources",
    "read_unit",
]

GZIP_MAGIC = b"\x1f\x8b"
_JSON_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\n\r]*\{")
_STEP = 1 << 20  # decompress at most 1 MiB per call so a bomb is caught within one step


@fast_pickle
@dataclass(frozen=True, slots=True)
class Extracted:
    """One report's JSON text, with the envelope of the mail it came in (None for files/HTTP)."""

    json_bytes: bytes
    envelope: Envelope | None
    label: str  # where in the input it was found, e.g. "part 2: google.com!x!1!2.json.gz"
    deviations: tuple[Deviation, ...] = ()  # about the carrier, e.g. mail.type.misdeclared


@dataclass(frozen=True, slots=True)
class Source:
    """One unit of input that is stored or quarantined as a whole: a file or one message."""

    origin: str  # a path, or "path#n" for the n-th message of an mbox
    raw: bytes


def extract_reports(raw: bytes, *, limits: Limits = DEFAULT_LIMITS) -> list[Extracted]:
    """Every report in ``raw``: plain JSON, gzip (RFC 8460 §6.5, sniffed by its magic bytes,
    §B7.4), or an RFC 8460 §5.3 e-mail. Raises ``ReportError("mail.no-report")`` for mail
    without a report and ``LimitExceeded`` for oversized input or decompression bombs."""
    if len(raw) > limits.max_input_bytes:
        raise LimitExceeded(
            "report.limit.input-bytes",
            f"input is {len(raw)} bytes, over the limit of {limits.max_input_bytes}",
        )
    if raw[:2] == GZIP_MAGIC:
        return [Extracted(_json_text(gunzip(raw, limits=limits), "gzip"), None, "gzip")]
    if _looks_like_json(raw):
        return [Extracted(_json_text(raw, "json"), None, "json")]
    return _from_mail(raw, limits)


def gunzip(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Decompress gzip (also concatenated members), stopping as soon as the output passes
    ``limits.max_json_bytes``, or, past the first MiB, expands more than
    ``limits.max_compression_ratio`` times the input read so far: a bomb (deflate reaches
    ~1000:1 on zeros) is refused after about a MiB of work; real reports compress ~5-30:1."""
    if len(data) > limits.max_compressed_bytes:
        raise LimitExceeded(
            "report.limit.compressed-bytes",
            f"gzip payload is {len(data)} bytes, over the limit of {limits.max_compressed_bytes}",
        )
    cap = limits.max_json_bytes
    inflater = zlib.decompressobj(wbits=31)
    try:
        first = inflater.decompress(data, min(_STEP, cap + 1))
        if inflater.eof and not inflater.unused_data and len(first) <= cap:
            return first  # the usual report: one member, inflated in one step
    except zlib.error as exc:
        raise ReportError("report.gzip.invalid", f"gzip data is corrupt: {exc}") from None
    out = bytearray()
    inflater = zlib.decompressobj(wbits=31)
    pending = data
    try:
        while True:
            chunk = inflater.decompress(pending, min(_STEP, cap + 1 - len(out)))
            out += chunk
            if len(out) > cap:
                raise LimitExceeded(
                    "report.limit.decompressed-bytes",
                    f"gzip expands past the limit of {cap} bytes (decompression bomb?)",
                )
            consumed = len(data) - len(inflater.unconsumed_tail)
            if len(out) > _STEP and len(out) > limits.max_compression_ratio * consumed:
                raise LimitExceeded(
                    "report.limit.compression-ratio",
                    f"gzip expands over {limits.max_compression_ratio}:1 (decompression bomb?)",
                )
            if inflater.eof:
                rest = inflater.unused_data
                if rest[:2] != GZIP_MAGIC:
                    break  # trailing garbage after the last member is ignored, as gzip(1) does
                inflater = zlib.decompressobj(wbits=31)
                pending = rest
                continue
            pending = inflater.unconsumed_tail
            if not pending and not chunk:
                raise ReportError("report.gzip.invalid", "gzip data is truncated")
    except zlib.error as exc:
        raise ReportError("report.gzip.invalid", f"gzip data is corrupt: {exc}") from None
    return bytes(out)


def iter_sources(
    path: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    on_error: Callable[[Path, OSError], None] | None = None,
) -> Iterator[Source]:
    """Units of input under ``path``: a file; a directory, recursively in name order, skipping
    dotfiles; an mbox (detected by a ``From `` first line) split into messages; a Maildir
    (``cur/`` and ``new/``) one message per file. A unit larger than
    ``limits.max_input_bytes`` is cut just past the limit so ``extract_reports`` refuses it
    without this reading gigabytes.

    With ``on_error``, a file or folder that cannot be read is reported there and the walk
    goes on; without it the ``OSError`` ends the walk."""
    for name, may_be_mbox in iter_files(path, on_error=on_error):
        try:
            raw = read_unit(name, limits)
            if may_be_mbox and is_mbox(raw):
                yield from _mbox_messages(Path(name), limits)
            else:
                yield Source(name, raw)
        except OSError as exc:
            if on_error is None:
                raise
            on_error(Path(name), exc)


def iter_files(
    path: Path, *, on_error: Callable[[Path, OSError], None] | None = None
) -> Iterator[tuple[str, bool]]:
    """The files ``iter_sources`` reads, in its order, without reading them: (path, whether
    it may be an mbox; Maildir messages never are). Bulk ingest hands these names to its
    worker processes, which read the files themselves."""
    if path.is_dir():
        yield from _walk(os.fspath(path), on_error)
    else:
        yield os.fspath(path), True


def read_unit(path: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """One file's bytes, cut just past ``limits.max_input_bytes``. Plain ``os`` calls: the
    buffered file object cost a third of reading a small report."""
    cap = limits.max_input_bytes + 1
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        # One read of the whole file and a byte more (it may have grown); a size of 0 is a
        # pipe or /proc file, read on in steps, as is anything a read returned short.
        data = os.read(fd, size + 1 if 0 < size < cap else min(cap, 1 << 16))
        if len(data) == size:
            return data
        parts = [data]
        total = len(data)
        while data and total < cap:
            data = os.read(fd, min(cap - total, 1 << 20))
            parts.append(data)
            total += len(data)
        return b"".join(parts)[:cap]
    finally:
        os.close(fd)


def is_mbox(raw: bytes) -> bool:
    return raw[:5] == b"From "


def iter_mbox(path: Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[Source]:
    """The messages of an mbox file, streaming (see ``iter_sources``)."""
    return _mbox_messages(path, limits)


# --- internals -----------------------------------------------------------------------------------


def _walk(
    folder: str,
    on_error: Callable[[Path, OSError], None] | None,
    seen: set[tuple[int, int]] | None = None,
) -> Iterator[tuple[str, bool]]:
    # os.scandir, not Path: names sort as strings and DirEntry knows files from folders
    # without a stat call each (reading a folder of 10,000 reports cost more than parsing).
    # Symlinked folders are followed, each folder once: a link back up (``loop -> ..``)
    # would otherwise list the same reports again at every level until ELOOP.
    if seen is None:
        try:
            st = os.stat(folder)
        except OSError as exc:
            if on_error is None:
                raise
            on_error(Path(folder), exc)
            return
        seen = {(st.st_dev, st.st_ino)}
    maildir = os.path.isdir(os.path.join(folder, "cur")) and os.path.isdir(
        os.path.join(folder, "new")
    )
    for sub in ("new", "cur") if maildir else ("",):
        where = os.path.join(folder, sub) if sub else folder
        try:
            with os.scandir(where) as listing:
                entries = sorted(
                    (e for e in listing if not e.name.startswith(".")), key=lambda e: e.name
                )
        except OSError as exc:
            if on_error is None:
                raise
            on_error(Path(where), exc)
            continue
        for entry in entries:
            try:
                if maildir:
                    if entry.is_file():
                        yield entry.path, False
                elif entry.is_dir():
                    st = entry.stat()
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        yield from _walk(entry.path, on_error, seen)
                elif entry.is_file():
                    yield entry.path, True
            except OSError as exc:
                if on_error is None:
                    raise
                on_error(Path(entry.path), exc)


def _from_mail(raw: bytes, limits: Limits) -> list[Extracted]:
    try:
        msg: HeaderSource
        flat = fast_report_parts(raw, limits)
        if flat is not None:
            msg, parts = flat
        else:
            msg = message_from_bytes(raw, policy=compat32)
            if not msg.keys():
                raise ReportError(
                    "report.format.unknown", "input is neither JSON, gzip nor an e-mail message"
                )
            parts = report_parts(msg, limits)
        envelope = read_envelope(msg)
    except ReportError:
        raise
    except (ValueError, LookupError, UnicodeError) as exc:
        # The email package is lenient, but odd parameters (RFC 2231 charsets, ...) can still
        # raise from deep inside it: the message is unreadable, not our bug.
        raise ReportError("mail.invalid", f"message cannot be read: {exc}") from None
    if not parts:
        raise ReportError(
            "mail.no-report",
            f"message {envelope.subject[:80]!r} carries no TLS report (RFC 8460 §5.3)",
        )
    if len(parts) > limits.max_reports_per_message:
        raise LimitExceeded(
            "report.limit.reports-per-message",
            f"message carries {len(parts)} reports, over the limit of "
            f"{limits.max_reports_per_message}",
        )
    out: list[Extracted] = []
    for part in parts:
        payload = part.payload
        gz = payload[:2] == GZIP_MAGIC
        if gz:
            text = gunzip(payload, limits=limits)
        elif _looks_like_json(payload):
            text = payload
        else:
            raise ReportError("mail.part.invalid", f"{part.label} is neither gzip nor JSON")
        devs: tuple[Deviation, ...] = ()
        # RFC 8460 §6.4/§6.5: +gzip bodies are gzip, +json bodies are not; anything else is
        # misdeclared too (we went by file name and content instead).
        if not part.declared or (part.media_type == "application/tlsrpt+gzip") != gz:
            what = DEVIATIONS["mail.type.misdeclared"].what
            devs = (Deviation("mail.type.misdeclared", part.label, what),)
        out.append(Extracted(_json_text(text, part.label), envelope, part.label, devs))
    return out


def _json_text(data: bytes, label: str) -> bytes:
    if not _looks_like_json(data):
        raise ReportError("report.json.invalid", f"{label}: content is not a JSON object")
    return data


def _looks_like_json(data: bytes) -> bool:
    """An object after any amount of JSON whitespace (RFC 8259 §2: space, tab, LF, CR), with
    the byte order mark ``parse_report`` tolerates first (§8.1)."""
    return _JSON_START.match(data) is not None


def _mbox_messages(path: Path, limits: Limits) -> Iterator[Source]:
    """Split an mbox on ``From `` lines (mboxo/mboxrd), streaming: one message in memory at a
    time, each cut just past ``max_input_bytes``."""
    cap = limits.max_input_bytes + 1
    index = 0
    lines: list[bytes] = []
    size = 0
    previous_blank = True
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(b"From ") and previous_blank:
                if index or lines:
                    yield Source(f"{path}#{index}", _mbox_body(lines))
                    index += 1
                lines, size = [], 0
                previous_blank = False
                continue
            previous_blank = line in (b"\n", b"\r\n")
            if size < cap:
                if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
                    line = line[1:]  # mboxrd quoting
                lines.append(line)
                size += len(line)
        if lines:
            yield Source(f"{path}#{index}", _mbox_body(lines))


def _mbox_body(lines: list[bytes]) -> bytes:
    body = b"".join(lines)
    # The blank line before the next "From " belongs to the mbox format, not the message.
    if body.endswith(b"\n\n"):
        body = body[:-1]
    elif body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    return body
