"""IMAP intake against Debian's Dovecot on loopback: move/flag after commit, resume, TLS, config."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imap_server import USERS, Dovecot, run_dovecot
from intake_samples import report_json, report_mail
from stspilot.cli import main
from stspilot.errors import ConfigError
from stspilot.ingest.dkim import DkimSettings, DkimVerifier
from stspilot.ingest.imap import ImapConfig, ImapError, load_imap_config, poll_once
from stspilot.ingest.pipeline import Tally
from stspilot.lab import LabDkimKey, make_dkim_key
from stspilot.lab.dkim_keys import KeyServer
from stspilot.lab.sample_reports import REPORTER_DOMAINS, generate_reports, to_email
from stspilot.store import Store

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
JUNK = b"From: cron@example.com\r\nSubject: backup\r\n\r\nfine\r\n"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    try:
        with run_dovecot() as server:
            yield server
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


_next_user = iter(USERS)


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    """A mailbox no other test in this module touches."""
    return next(_next_user)


def _config(dovecot: Dovecot, user: str, **overrides: object) -> ImapConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": dovecot.port,
        "tls": "none",
        "user": user,
        "password": dovecot.password,
        "batch_size": 2,
    }
    values.update(overrides)
    return ImapConfig(**values)  # type: ignore[arg-type]


def _fill(dovecot: Dovecot, user: str, reports: int, junk: int = 0) -> None:
    for i in range(reports):
        raw = report_mail(report_json("sender.example", f"{user}-{i}", failures=i % 2))
        dovecot.append(user, "INBOX", raw)
    for i in range(junk):
        dovecot.append(user, "INBOX", JUNK + str(i).encode())


def test_poll_moves_after_commit(dovecot: Dovecot, user: str, store: Store) -> None:
    _fill(dovecot, user, reports=5, junk=1)
    config = _config(dovecot, user, quarantine_folder="Quarantine")
    result = poll_once(store, config, clock=lambda: NOW)
    assert result.tally == Tally(new=5, quarantined=1)
    assert (result.moved, result.flagged) == (6, 0)
    assert store.count_reports() == 5
    assert dovecot.uids(user, "INBOX") == []
    assert len(dovecot.uids(user, "Processed")) == 5
    assert len(dovecot.uids(user, "Quarantine")) == 1
    [item] = store.list_quarantine()
    assert item.origin.startswith(f"imap://{user}@127.0.0.1/INBOX;UID=")
    # Nothing left: a second poll does nothing.
    assert poll_once(store, config).tally == Tally()


def test_flag_when_not_moving_and_seen_untouched(dovecot: Dovecot, user: str, store: Store) -> None:
    _fill(dovecot, user, reports=3)
    config = _config(dovecot, user, done_folder=None)
    result = poll_once(store, config)
    assert (result.tally, result.moved, result.flagged) == (Tally(new=3), 0, 3)
    assert len(dovecot.uids(user, "INBOX", "KEYWORD", config.flag)) == 3
    # BODY.PEEK: a person reading this mailbox still sees the mail as unread.
    assert len(dovecot.uids(user, "INBOX", "UNSEEN")) == 3
    assert poll_once(store, config).tally == Tally()


class Crash(Exception):
    pass


def test_crash_between_commit_and_move_resumes(dovecot: Dovecot, user: str, store: Store) -> None:
    _fill(dovecot, user, reports=4, junk=1)
    config = _config(dovecot, user)
    committed: list[Sequence[int]] = []

    def crash_after_first_batch(uids: Sequence[int]) -> None:
        committed.append(uids)
        raise Crash("killed between commit and move")

    with pytest.raises(Crash):
        poll_once(store, config, on_committed=crash_after_first_batch)
    assert len(committed) == 1 and len(committed[0]) == config.batch_size
    assert store.count_reports() == 2  # the first batch was committed ...
    assert len(dovecot.uids(user, "INBOX")) == 5  # ... but nothing was acknowledged
    result = poll_once(store, config)
    # The committed batch comes back as duplicates (a no-op), the rest is new; all moved.
    assert result.tally == Tally(new=2, duplicate=2, quarantined=1)
    assert result.moved == 5
    assert store.count_reports() == 4
    assert len(store.list_quarantine()) == 1
    assert dovecot.uids(user, "INBOX") == []


def test_store_failure_acknowledges_nothing(dovecot: Dovecot, user: str, store: Store) -> None:
    from sqlalchemy import text

    _fill(dovecot, user, reports=2)
    cascade = " CASCADE" if store.dialect == "postgresql" else ""
    with store.engine.begin() as conn:
        for table in ("failure_details", "report_policies", "quarantine", "reports"):
            conn.execute(text(f"DROP TABLE {table}{cascade}"))
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        poll_once(store, _config(dovecot, user))
    assert len(dovecot.uids(user, "INBOX")) == 2


def test_oversized_message_kept_in_quarantine(dovecot: Dovecot, user: str, store: Store) -> None:
    big = report_mail(report_json("sender.example", "big"), compress=False)
    dovecot.append(user, "INBOX", big)
    result = poll_once(store, _config(dovecot, user, max_message_bytes=len(big) // 2))
    assert result.tally == Tally(quarantined=1) and result.moved == 1
    [item] = store.list_quarantine()
    assert item.code == "report.limit.message-size"
    kept = store.quarantine_raw(item.id)
    assert 0 < len(kept) <= len(big) // 2 and big.startswith(kept.replace(b"\r\n", b"\n")[:20])


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_modes(dovecot: Dovecot, user: str, store: Store, tls: str) -> None:
    _fill(dovecot, user, reports=1)
    port = dovecot.tls_port if tls == "implicit" else dovecot.port
    config = _config(dovecot, user, tls=tls, port=port, ca_file=dovecot.ca_file)
    assert poll_once(store, config).tally.new == 1


def test_untrusted_certificate_is_refused(dovecot: Dovecot, store: Store) -> None:
    config = _config(dovecot, "user39", tls="implicit", port=dovecot.tls_port, ca_file=None)
    with pytest.raises(ImapError, match="cannot connect"):
        poll_once(store, config)


def test_wrong_password(dovecot: Dovecot, store: Store) -> None:
    with pytest.raises(ImapError, match="login"):
        poll_once(store, _config(dovecot, "user39", password="nope"))


@pytest.mark.parametrize(
    ("toml", "env", "error"),
    [
        ('[imap]\nhost = "h"\nuser = "u"\n', {}, "no IMAP password"),
        ('[imap]\nhost = "h"\nuser = "u"\npassword = "x"\n', {}, "not in the config"),
        ('[imap]\nuser = "u"\n', {"STSPILOT_IMAP_PASSWORD": "p"}, "needs 'host'"),
        (
            '[imap]\nhost = "h"\nuser = "u"\ntls = "none"\n',
            {"STSPILOT_IMAP_PASSWORD": "p"},
            "clear text",
        ),
        (
            '[imap]\nhost = "h"\nuser = "u"\ntls = "ssl"\n',
            {"STSPILOT_IMAP_PASSWORD": "p"},
            "implicit, starttls or none",
        ),
        (
            '[imap]\nhost = "h"\nuser = "u"\nport = "x"\n',
            {"STSPILOT_IMAP_PASSWORD": "p"},
            "bad IMAP config",
        ),
        (
            '[imap]\nhost = "h"\nuser = "u"\nsurprise = 1\n',
            {"STSPILOT_IMAP_PASSWORD": "p"},
            "unknown IMAP config keys",
        ),
        ("[imap\n", {"STSPILOT_IMAP_PASSWORD": "p"}, "cannot read"),
    ],
)
def test_config_errors(tmp_path: Path, toml: str, env: dict[str, str], error: str) -> None:
    path = tmp_path / "imap.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=error):
        load_imap_config(path, env=env)


def test_config_password_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    path = tmp_path / "imap.toml"
    path.write_text(f'[imap]\nhost = "mail.example"\nuser = "u"\npassword_file = "{tmp_path}/pw"\n')
    from_file = load_imap_config(path, env={})
    assert (from_file.password, from_file.effective_port, from_file.tls) == (
        "from-file",
        993,
        "implicit",
    )
    assert "from-file" not in repr(from_file)
    assert load_imap_config(path, env={"STSPILOT_IMAP_PASSWORD": "env"}).password == "env"


def test_cli_ingest_imap(
    dovecot: Dovecot,
    user: str,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(dovecot, user, reports=2, junk=1)
    path = tmp_path / "imap.toml"
    path.write_text(
        f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\ntls = "starttls"\n'
        f'ca_file = "{dovecot.ca_file}"\nuser = "{user}"\n'
    )
    monkeypatch.setenv("STSPILOT_IMAP_PASSWORD", dovecot.password)
    code = main(["ingest", "imap", "--config", str(path), "--db", store_url, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["new"], out["quarantined"], out["moved"]) == (1, 2, 1, 3)


# --- DKIM verification of polled mail ------------------------------------------------------------


def _signed(key: LabDkimKey) -> tuple[bytes, bytes]:
    """Two lab-signed report mails from one reporter, the second with one body byte changed."""
    google = [r for r in generate_reports(20, seed=3) if r["organization-name"] == "Google Inc."]
    good, other = (to_email(r, dkim_key=key) for r in google[:2])
    at = other.index(b"aggregate TLS report")
    return good, other[:at] + b"A" + other[at + 1 :]


def _results(store: Store) -> list[tuple[str | None, bool]]:
    out = []
    for item in store.list_reports():
        stored = store.get_report(item.pk)
        assert stored is not None and stored.envelope is not None
        dkim = stored.envelope.get("dkim")
        failed = any(d.code == "mail.dkim.fail" for d in stored.deviations)
        out.append((None if dkim is None else dkim["result"], failed))
    return sorted(out, key=str)


def test_poll_verifies_dkim(dovecot: Dovecot, user: str, store: Store) -> None:
    key = make_dkim_key()
    for raw in _signed(key):
        dovecot.append(user, "INBOX", raw.replace(b"\n", b"\r\n"))
    with KeyServer(key.records(REPORTER_DOMAINS)) as dns:
        verifier = DkimVerifier(DkimSettings(nameserver=dns.host, port=dns.port, timeout=2))
        result = poll_once(store, _config(dovecot, user), clock=lambda: NOW, dkim=verifier)
        assert dns.queries == 1
    assert result.tally == Tally(new=2)
    assert _results(store) == [("fail", True), ("pass", False)]


def test_cli_ingest_imap_verify_dkim(
    dovecot: Dovecot,
    user: str,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = make_dkim_key()
    for raw in _signed(key):
        dovecot.append(user, "INBOX", raw.replace(b"\n", b"\r\n"))
    path = tmp_path / "imap.toml"
    path.write_text(f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\ntls = "none"\n')
    path.write_text(path.read_text() + f'user = "{user}"\n')
    monkeypatch.setenv("STSPILOT_IMAP_PASSWORD", dovecot.password)
    with KeyServer(key.records(REPORTER_DOMAINS)) as dns:
        args = ["ingest", "imap", "--config", str(path), "--db", store_url, "--json"]
        code = main([*args, "--verify-dkim", "--nameserver", dns.nameserver])
    assert code == 0 and json.loads(capsys.readouterr().out)["new"] == 2
    with Store.open(store_url) as check:
        assert _results(check) == [("fail", True), ("pass", False)]
