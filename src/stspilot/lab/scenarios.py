"""The lab's scenarios as data: one table drives unit tests, end-to-end tests and the benchmark.

A ``Scenario`` is a domain, what it publishes (TXT records, policy file, MX set), how its hosts
behave (HTTPS policy host, SMTP MX hosts), DNS faults, and what ``stspilot check`` must say:
the exact set of finding codes (``findings.CATALOGUE``) and the rollout stage.
Domains live under ``.test`` (RFC 2606); ``{d}`` in names and texts is the scenario's domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stspilot.lab.certs import CertKind
from stspilot.lab.dns_server import DnsFault, Record
from stspilot.lab.dnssec import ZoneFault
from stspilot.lab.https_host import HttpBehaviour
from stspilot.lab.smtp_host import SmtpBehaviour

# A reporting provider outside every scenario's MX set, so healthy domains are really clean.
REPORTS_DOMAIN = "reports-provider.test"
REPORTS_MX = "mx.reports-provider.test"
STS_OK = "v=STSv1; id=20240101T000000"
TLSRPT_OK = f"v=TLSRPTv1; rua=mailto:tlsrpt@{REPORTS_DOMAIN}"
ENFORCE = "version: STSv1\nmode: enforce\nmx: mx1.{d}\nmx: mx2.{d}\nmax_age: 604800\n"
TESTING = "version: STSv1\nmode: testing\nmx: mx1.{d}\nmx: mx2.{d}\nmax_age: 86400\n"


@dataclass(frozen=True, slots=True)
class PolicyHost:
    behaviour: HttpBehaviour = HttpBehaviour.OK
    cert: CertKind = CertKind.GOOD


@dataclass(frozen=True, slots=True)
class Mx:
    name: str  # may contain {d}
    preference: int = 10
    behaviour: SmtpBehaviour = SmtpBehaviour.OK
    cert: CertKind = CertKind.GOOD
    address: bool = True


TWO_MX = (Mx("mx1.{d}", 10), Mx("mx2.{d}", 20))


@dataclass(frozen=True, slots=True)
class Tlsa:
    """A TLSA record at ``_25._tcp.<host>`` whose data the lab computes from the served chain.

    ``target``: "leaf" (the host's certificate), "issuer" (the intermediate it sends), or
    "other" (a key nobody serves: a stale record, or the next key of a rollover), "short"
    (such a key's digest cut to 20 octets: an unusable record, RFC 6698 §2.1).
    """

    host: str  # may contain {d}
    params: str = "3 1 1"
    target: str = "leaf"


@dataclass(frozen=True, slots=True)
class Scenario:
    domain: str
    summary: str
    expected: frozenset[str]
    stage: str
    sts: tuple[tuple[str, ...], ...] = ((STS_OK,),)
    sts_cname: str = ""  # _mta-sts.{d} is a CNAME to this name, which holds ``sts``
    tlsrpt: tuple[tuple[str, ...], ...] = ((TLSRPT_OK,),)
    policy: str | None = ENFORCE
    policy_host: PolicyHost | None = PolicyHost()
    mx: tuple[Mx, ...] = TWO_MX
    dns_faults: tuple[tuple[str, DnsFault], ...] = ()
    extra: tuple[Record, ...] = ()
    shared: bool = False  # hosts shared with other scenarios of the same kind (benchmark)
    tags: tuple[str, ...] = field(default=())
    # DANE: zones signed with the lab's own keys (their DS in the lab's trust anchor file),
    # TLSA records, and faults applied after signing: (owner, type, fault)
    signed: tuple[str, ...] = ()
    tlsa: tuple[Tlsa, ...] = ()
    dnssec_faults: tuple[tuple[str, str, ZoneFault], ...] = ()

    def records(self) -> list[Record]:
        """Every DNS record this scenario publishes, except the hosts' A records."""
        from stspilot.lab.world import txt_value

        d = self.domain
        out = [Record(REPORTS_DOMAIN, "MX", f"10 {REPORTS_MX}.")]
        sts_owner = f"_mta-sts.{d}"
        if self.sts_cname:
            out.append(Record(sts_owner, "CNAME", self.sts_cname + "."))
            sts_owner = self.sts_cname
        out += [Record(sts_owner, "TXT", txt_value(strings)) for strings in self.sts]
        out += [Record(f"_smtp._tls.{d}", "TXT", txt_value(s)) for s in self.tlsrpt]
        for mx in self.mx:
            target = f"{mx.name}." if mx.name else "."
            record = Record(d, "MX", f"{mx.preference} {target}")
            if record not in out:  # a name listed twice is one MX host with two addresses
                out.append(record)
        out += self.extra
        # The apex exists even with no MX (for NODATA rather than NXDOMAIN).
        out.append(Record(d, "TXT", txt_value(["lab scenario"])))
        return out


def scenario(slug: str, summary: str, expected: set[str], stage: str, **kw: object) -> Scenario:
    """Build a scenario for ``<slug>.test``, filling ``{d}`` in names, texts and records."""
    d = f"{slug}.test"

    def fill(value: object) -> object:
        if type(value) is str:  # not the StrEnum behaviours
            return value.replace("{d}", d)
        if isinstance(value, tuple):
            return tuple(fill(v) for v in value)
        if isinstance(value, Mx):
            name = str(fill(value.name))
            return Mx(name, value.preference, value.behaviour, value.cert, value.address)
        if isinstance(value, Record):
            return Record(str(fill(value.name)), value.rtype, str(fill(value.value)))
        if isinstance(value, Tlsa):
            return Tlsa(str(fill(value.host)), value.params, value.target)
        return value

    kw.setdefault("mx", TWO_MX)
    kw.setdefault("policy", ENFORCE)
    filled = {k: fill(v) for k, v in kw.items()}
    summary = summary.replace("{d}", d)
    return Scenario(d, summary, frozenset(expected), stage, **filled)  # type: ignore[arg-type]


def _mx1(**kw: object) -> tuple[Mx, ...]:
    return (Mx("mx1.{d}", 10, **kw), Mx("mx2.{d}", 20))  # type: ignore[arg-type]


_HTTP = HttpBehaviour
# DANE-EE for the served key plus the next key's digest, on both MX: rollover-ready.
_PAIRS = (
    Tlsa("mx1.{d}"), Tlsa("mx1.{d}", target="other"),
    Tlsa("mx2.{d}"), Tlsa("mx2.{d}", target="other"),
)  # fmt: skip
_ORPHAN = "sts.orphan.dns"

# fmt: off
SCENARIOS: tuple[Scenario, ...] = (
    # --- healthy ---
    scenario("enforce-ok", "Healthy enforce domain: TXT, policy, 2 MX, TLS-RPT", set(), "enforce"),
    scenario("testing-ok", "Healthy testing domain", {"sts.policy.mode-testing"}, "testing",
             policy=TESTING),
    scenario("crlf-ok", "Policy with CRLF line ends (valid)", set(), "enforce",
             policy=ENFORCE.replace("\n", "\r\n")),
    scenario("chain-ok", "Certificates from an intermediate CA, served with the intermediate",
             set(), "enforce", policy_host=PolicyHost(cert=CertKind.GOOD_CHAIN),
             mx=(Mx("mx1.{d}", 10, cert=CertKind.GOOD_CHAIN),
                 Mx("mx2.{d}", 20, cert=CertKind.GOOD_CHAIN))),
    scenario("mode-none", "Policy in mode none", {"sts.policy.mode-none"}, "none-mode",
             policy="version: STSv1\nmode: none\nmax_age: 86400\n"),
    # --- the _mta-sts TXT record ---
    scenario("sts-absent", "TLS-RPT only, no MTA-STS", {"sts.txt.missing"}, "reporting",
             sts=(), policy_host=None),
    scenario("bare", "Nothing published", {"sts.txt.missing", "tlsrpt.missing"}, "none",
             sts=(), tlsrpt=(), policy_host=None),
    scenario("txt-multiple", "Two v=STSv1 records", {"sts.txt.multiple"},
             "reporting", sts=((STS_OK,), ("v=STSv1; id=20240202",))),
    scenario("txt-not-sts", "TXT at _mta-sts is not v=STSv1",
             {"sts.orphan.policy"}, "reporting", sts=(("v=spf1 -all",),)),
    scenario("txt-bad-id", "id with dashes", {"sts.txt.id.invalid"},
             "reporting", sts=(("v=STSv1; id=2024-01-01",),)),
    scenario("txt-split", "TXT split into two strings", {"sts.txt.split"}, "enforce",
             sts=(("v=STSv1; ", "id=20240101"),)),
    scenario("txt-cname", "_mta-sts is a CNAME chain to a provider", {"sts.txt.cname"},
             "enforce", sts_cname="_mta-sts.{d}.provider.test"),
    scenario("txt-extension", "Unknown field in the TXT", {"sts.txt.extension"}, "enforce",
             sts=(("v=STSv1; id=20240101; ext=1",),)),
    scenario("txt-servfail", "The _mta-sts lookup fails (SERVFAIL)", {"sts.txt.lookup-failed"},
             "unknown", dns_faults=(("_mta-sts.{d}", DnsFault.SERVFAIL),)),
    # --- fetching the policy ---
    scenario("fetch-nxdomain", "mta-sts host does not exist", {"sts.policy.host-missing",
             _ORPHAN}, "reporting", policy_host=None),
    scenario("fetch-404", "Policy URL answers 404", {"sts.policy.http-status", _ORPHAN},
             "reporting",
             policy_host=PolicyHost(_HTTP.NOT_FOUND)),
    scenario("fetch-redirect", "Policy URL redirects", {"sts.policy.redirect", _ORPHAN},
             "reporting",
             policy_host=PolicyHost(_HTTP.REDIRECT)),
    scenario("fetch-html", "200 with an HTML page", {"sts.policy.html", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.HTML)),
    scenario("fetch-type", "Policy served as application/octet-stream",
             {"sts.policy.content-type", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.WRONG_TYPE)),
    scenario("fetch-charset", "text/plain; charset=iso-8859-1", {"sts.policy.charset"},
             "enforce", policy_host=PolicyHost(_HTTP.CHARSET)),
    scenario("fetch-huge", "1 MiB policy body", {"sts.policy.too-large", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.HUGE)),
    scenario("fetch-gzip-bomb", "gzip body of 16 MiB of zeros", {"sts.policy.too-large",
             _ORPHAN}, "reporting", policy_host=PolicyHost(_HTTP.GZIP_BOMB), tags=("hostile",)),
    scenario("fetch-endless", "Body that never ends", {"sts.policy.too-large", _ORPHAN},
             "reporting",
             policy_host=PolicyHost(_HTTP.ENDLESS), tags=("hostile",)),
    scenario("fetch-slow", "One byte per second", {"sts.policy.timeout", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.SLOW), tags=("hostile", "slow")),
    scenario("fetch-hang", "TLS, then silence", {"sts.policy.timeout", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.HANG), tags=("hostile", "slow")),
    scenario("fetch-garbage", "Not HTTP after TLS", {"sts.policy.protocol-error", _ORPHAN},
             "reporting", policy_host=PolicyHost(_HTTP.GARBAGE), tags=("hostile",)),
    scenario("fetch-bad-chunk", "Chunk size written 0x.. (not RFC 9112 hex)",
             {"sts.policy.protocol-error", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.BAD_CHUNK), tags=("hostile",)),
    scenario("fetch-gzip-chunked", "Transfer-Encoding: gzip, chunked (not asked for)",
             {"sts.policy.protocol-error", _ORPHAN}, "reporting",
             policy_host=PolicyHost(_HTTP.GZIP_CHUNKED), tags=("hostile",)),
    scenario("fetch-no-tls", "The policy host does not speak TLS", {"sts.policy.tls.handshake",
             _ORPHAN}, "reporting", policy_host=PolicyHost(_HTTP.NO_TLS)),
    scenario("fetch-expired", "Expired certificate on mta-sts", {"sts.policy.tls.expired",
             _ORPHAN}, "reporting", policy_host=PolicyHost(cert=CertKind.EXPIRED)),
    scenario("fetch-wrong-name", "Certificate for another name",
             {"sts.policy.tls.host-mismatch", _ORPHAN}, "reporting",
             policy_host=PolicyHost(cert=CertKind.WRONG_NAME)),
    scenario("fetch-unknown-ca", "Leaf from an unknown CA, served alone (no AIA caIssuers)",
             {"sts.policy.tls.untrusted", _ORPHAN}, "reporting",
             policy_host=PolicyHost(cert=CertKind.UNKNOWN_CA)),
    scenario("fetch-not-yet-valid", "Certificate on mta-sts valid only from next week",
             {"sts.policy.tls.not-yet-valid", _ORPHAN}, "reporting",
             policy_host=PolicyHost(cert=CertKind.NOT_YET_VALID)),
    scenario("fetch-untrusted", "Certificate from an unknown CA (full chain)",
             {"sts.policy.tls.untrusted", _ORPHAN}, "reporting",
             policy_host=PolicyHost(cert=CertKind.UNTRUSTED)),
    scenario("fetch-chain-incomplete", "Certificate served without its intermediate",
             {"sts.policy.tls.chain-incomplete", _ORPHAN}, "reporting",
             policy_host=PolicyHost(cert=CertKind.CHAIN_INCOMPLETE)),
    scenario("fetch-self-signed", "Self-signed certificate", {"sts.policy.tls.untrusted",
             _ORPHAN}, "reporting", policy_host=PolicyHost(cert=CertKind.SELF_SIGNED)),
    scenario("fetch-expiring", "Certificate expires in 5 days", {"sts.policy.tls.expiring"},
             "enforce", policy_host=PolicyHost(cert=CertKind.EXPIRING)),
    # --- the policy text ---
    scenario("text-prose", "Prose instead of a policy", {"sts.policy.syntax", _ORPHAN}, "reporting",
             policy="Hello! Our mail servers support TLS. Contact postmaster for details.\n"),
    scenario("text-no-mx", "enforce without mx lines", {"sts.policy.mx.missing", _ORPHAN},
             "reporting", policy="version: STSv1\nmode: enforce\nmax_age: 604800\n"),
    scenario("maxage-short", "enforce with max_age of one hour", {"sts.policy.max-age.short"},
             "enforce", policy=ENFORCE.replace("604800", "3600")),
    scenario("maxage-long-testing", "testing with max_age of a year",
             {"sts.policy.mode-testing", "sts.policy.max-age.long-testing"}, "testing",
             policy=TESTING.replace("86400", "31557600")),
    # --- the MX set against the policy ---
    scenario("mx-uncovered", "A live MX the policy does not list", {"sts.mx.not-covered"},
             "enforce", mx=(*TWO_MX, Mx("mx3.{d}", 30))),
    scenario("mx-unused", "A pattern for a retired MX", {"sts.mx.pattern-unused"}, "enforce",
             policy=ENFORCE.replace("mx: mx2", "mx: old.{d}\nmx: mx2")),
    scenario("mx-wildcard-deep", "*.mx.{d} does not cover a.b.mx.{d}",
             {"sts.mx.not-covered", "sts.mx.pattern-unused", "sts.policy.mx.wildcard"},
             "enforce", policy="version: STSv1\nmode: enforce\nmx: *.mx.{d}\nmax_age: 604800\n",
             mx=(Mx("a.b.mx.{d}"),)),
    scenario("mx-wildcard-ok", "*.mx.{d} covers a.mx.{d}", {"sts.policy.mx.wildcard"},
             "enforce", policy="version: STSv1\nmode: enforce\nmx: *.mx.{d}\nmax_age: 604800\n",
             mx=(Mx("a.mx.{d}"),)),
    scenario("mx-missing", "No MX records", {"dns.mx.missing"},
             "enforce", mx=()),
    scenario("mx-null", "Null MX, nothing else", {"dns.mx.null", "sts.txt.missing",
             "tlsrpt.missing"}, "none", sts=(), tlsrpt=(), policy_host=None, mx=(Mx("", 0),)),
    # --- STARTTLS probes (enforce: every failure is an error) ---
    scenario("mx-no-starttls", "MX without STARTTLS", {"mx.starttls.missing"}, "enforce",
             mx=_mx1(behaviour=SmtpBehaviour.NO_STARTTLS)),
    scenario("mx-starttls-refused", "STARTTLS answered 454", {"mx.starttls.rejected"},
             "enforce", mx=_mx1(behaviour=SmtpBehaviour.STARTTLS_REFUSED)),
    scenario("mx-tls-broken", "STARTTLS then not TLS", {"mx.tls.handshake"}, "enforce",
             mx=_mx1(behaviour=SmtpBehaviour.TLS_BROKEN)),
    scenario("mx-no-banner", "MX never greets", {"mx.banner-timeout"}, "enforce",
             mx=_mx1(behaviour=SmtpBehaviour.NO_BANNER), tags=("slow",)),
    scenario("mx-banner-554", "MX greets with 554", {"mx.banner-rejected"}, "enforce",
             mx=_mx1(behaviour=SmtpBehaviour.BANNER_554)),
    scenario("mx-garbage", "MX sends endless garbage", {"mx.protocol-error"}, "enforce",
             mx=_mx1(behaviour=SmtpBehaviour.GARBAGE), tags=("hostile",)),
    scenario("mx-expired", "MX certificate expired", {"mx.cert.expired"}, "enforce",
             mx=_mx1(cert=CertKind.EXPIRED)),
    scenario("mx-self-signed", "MX certificate self-signed", {"mx.cert.self-signed"},
             "enforce", mx=_mx1(cert=CertKind.SELF_SIGNED)),
    scenario("mx-wrong-name", "MX certificate for another name", {"mx.cert.host-mismatch"},
             "enforce", mx=_mx1(cert=CertKind.WRONG_NAME)),
    scenario("mx-unknown-ca", "MX leaf from an unknown CA, served alone (no AIA caIssuers)",
             {"mx.cert.untrusted"}, "enforce", mx=_mx1(cert=CertKind.UNKNOWN_CA)),
    scenario("mx-not-yet-valid", "MX certificate valid only from next week",
             {"mx.cert.not-yet-valid"}, "enforce", mx=_mx1(cert=CertKind.NOT_YET_VALID)),
    scenario("mx-untrusted", "MX certificate from an unknown CA (full chain)",
             {"mx.cert.untrusted"}, "enforce", mx=_mx1(cert=CertKind.UNTRUSTED)),
    scenario("mx-chain-incomplete", "MX certificate served without its intermediate",
             {"mx.cert.chain-incomplete"}, "enforce", mx=_mx1(cert=CertKind.CHAIN_INCOMPLETE)),
    scenario("mx-second-address-expired", "MX host with two addresses, the second expired",
             {"mx.cert.expired"}, "enforce",
             mx=(Mx("mx1.{d}", 10), Mx("mx1.{d}", 10, cert=CertKind.EXPIRED), Mx("mx2.{d}", 20))),
    scenario("mx-expiring", "MX certificate expires in 5 days", {"mx.cert.expiring"},
             "enforce", mx=_mx1(cert=CertKind.EXPIRING)),
    scenario("mx-no-address", "MX name without an address", {"mx.no-address"}, "enforce",
             mx=_mx1(address=False)),
    # --- orphans ---
    scenario("orphan-policy", "Policy file but no TXT record", {"sts.orphan.policy"},
             "reporting", sts=()),
    scenario("txt-at-apex", "Both TXT records published at the domain itself",
             {"sts.txt.at-apex", "sts.orphan.policy", "tlsrpt.at-apex", "tlsrpt.missing"},
             "none", sts=(), tlsrpt=(),
             extra=(Record("{d}", "TXT", f'"{STS_OK}"'), Record("{d}", "TXT", f'"{TLSRPT_OK}"'))),
    # --- TLS-RPT ---
    scenario("tlsrpt-absent", "MTA-STS without TLS-RPT", {"tlsrpt.missing"}, "enforce",
             tlsrpt=()),
    scenario("tlsrpt-bad-scheme", "rua with ftp:", {"tlsrpt.rua.scheme"}, "enforce",
             tlsrpt=(("v=TLSRPTv1; rua=ftp://reports.{d}/",),)),
    scenario("tlsrpt-depends-on-mx", "rua mailbox behind the checked MX",
             {"tlsrpt.rua.depends-on-mx"}, "enforce",
             tlsrpt=(("v=TLSRPTv1; rua=mailto:tlsrpt@{d}",),)),
    # --- DANE next to MTA-STS (signed with the lab's own keys; RFC 7672) ---
    scenario("dane-ee", "DANE-EE 3 1 1 on both MX, one record each",
             {"dane.match", "dane.rollover.single"}, "enforce", signed=("{d}",),
             tlsa=(Tlsa("mx1.{d}"), Tlsa("mx2.{d}"))),
    scenario("dane-rollover", "DANE-EE current + next key on both MX (rollover-ready)",
             {"dane.match", "dane.stale-record"}, "enforce", signed=("{d}",), tlsa=_PAIRS),
    scenario("dane-ta", "DANE-TA 2 1 1 for the intermediate both MX send",
             {"dane.match"}, "enforce", signed=("{d}",),
             mx=(Mx("mx1.{d}", 10, cert=CertKind.GOOD_CHAIN),
                 Mx("mx2.{d}", 20, cert=CertKind.GOOD_CHAIN)),
             tlsa=(Tlsa("mx1.{d}", "2 1 1", "issuer"), Tlsa("mx1.{d}", "2 0 1", "issuer"),
                   Tlsa("mx2.{d}", "2 1 1", "issuer"))),
    scenario("dane-mismatch", "TLSA names a key the MX hosts do not serve",
             {"dane.mismatch"}, "enforce", signed=("{d}",),
             tlsa=(Tlsa("mx1.{d}", target="other"), Tlsa("mx2.{d}", target="other"))),
    scenario("dane-bogus", "TLSA of mx1 changed after signing (bad signature)",
             {"dane.bogus", "dane.match", "dane.stale-record"}, "enforce", signed=("{d}",),
             tlsa=_PAIRS, dnssec_faults=(("_25._tcp.mx1.{d}", "TLSA", ZoneFault.TAMPERED),)),
    scenario("dane-rrsig-expired", "RRSIG on the TLSA of mx1 expired yesterday",
             {"dane.bogus", "dane.match", "dane.stale-record"}, "enforce", signed=("{d}",),
             tlsa=_PAIRS, dnssec_faults=(("_25._tcp.mx1.{d}", "TLSA", ZoneFault.EXPIRED),)),
    scenario("dane-mx-bogus", "RRSIG on the MX RRset expired",
             {"dane.mx.bogus", "dane.match", "dane.stale-record"}, "enforce", signed=("{d}",),
             tlsa=_PAIRS, dnssec_faults=(("{d}", "MX", ZoneFault.EXPIRED),)),
    scenario("dane-unsigned", "TLSA records in an unsigned zone",
             {"dane.insecure"}, "enforce", tlsa=_PAIRS),
    scenario("dane-mx-insecure", "Unsigned MX RRset, MX hosts in a signed zone with TLSA",
             {"dane.match", "dane.stale-record", "dane.mx.insecure"}, "enforce",
             signed=("hosts.{d}",),
             mx=(Mx("mx1.hosts.{d}", 10), Mx("mx2.hosts.{d}", 20)),
             policy=ENFORCE.replace("mx1.{d}", "mx1.hosts.{d}").replace("mx2.{d}", "mx2.hosts.{d}"),
             tlsa=(Tlsa("mx1.hosts.{d}"), Tlsa("mx1.hosts.{d}", target="other"),
                   Tlsa("mx2.hosts.{d}"), Tlsa("mx2.hosts.{d}", target="other"))),
    scenario("dane-pkix-only", "Only PKIX-EE (1 1 1) records",
             {"dane.pkix-usage", "dane.unusable"}, "enforce", signed=("{d}",),
             tlsa=(Tlsa("mx1.{d}", "1 1 1"), Tlsa("mx2.{d}", "1 1 1"))),
    scenario("dane-one-of-two", "DANE on mx1 only",
             {"dane.match", "dane.stale-record", "dane.partial"}, "enforce", signed=("{d}",),
             tlsa=_PAIRS[:2]),
    scenario("dane-tlsa-servfail", "The TLSA lookup of mx1 fails (SERVFAIL) in a signed zone",
             {"dane.lookup-failed", "dane.match", "dane.stale-record"}, "enforce",
             signed=("{d}",), tlsa=_PAIRS,
             dns_faults=(("_25._tcp.mx1.{d}", DnsFault.SERVFAIL),)),
    scenario("dane-no-starttls", "Signed TLSA, but mx1 offers no STARTTLS",
             {"dane.no-tls", "mx.starttls.missing", "dane.match", "dane.stale-record"},
             "enforce", signed=("{d}",), tlsa=_PAIRS,
             mx=_mx1(behaviour=SmtpBehaviour.NO_STARTTLS)),
    scenario("dane-self-signed", "DANE-EE passes on a self-signed MX certificate; MTA-STS fails",
             {"dane.match", "dane.stale-record", "dane.sts-disagree", "mx.cert.self-signed"},
             "enforce", signed=("{d}",), tlsa=_PAIRS, mx=_mx1(cert=CertKind.SELF_SIGNED)),
    # RFC 7672 §2.2.2: mx1's TLSA is in a signed zone of its own, its address is not signed
    scenario("dane-address-insecure", "Signed TLSA for mx1, but its A record is unsigned",
             {"dane.address.insecure"}, "enforce", signed=("_tcp.mx1.{d}",),
             tlsa=(Tlsa("mx1.{d}"),)),
    # one TLSA record of mx1 has a digest of the wrong length: only it is skipped
    scenario("dane-short-digest", "mx1: a good 3 1 1 record beside one whose digest is cut short",
             {"dane.match", "dane.record.unusable", "dane.rollover.single"}, "enforce",
             signed=("{d}",),
             tlsa=(Tlsa("mx1.{d}"), Tlsa("mx1.{d}", target="short"), Tlsa("mx2.{d}"))),
    # mx1's two addresses serve different keys; its TLSA names the second one's only
    scenario("dane-two-keys", "Two addresses of mx1 serve different keys; TLSA matches one",
             {"dane.mismatch", "dane.match", "dane.rollover.single"}, "enforce",
             signed=("{d}",), tlsa=(Tlsa("mx1.{d}"), Tlsa("mx2.{d}")),
             mx=(Mx("mx1.{d}", 10), Mx("mx1.{d}", 10, cert=CertKind.GOOD_CHAIN),
                 Mx("mx2.{d}", 20))),
)
# fmt: on

BY_DOMAIN: dict[str, Scenario] = {sc.domain: sc for sc in SCENARIOS}


def healthy(index: int, *, mx_count: int = 1) -> Scenario:
    """The benchmark's healthy enforce domain number ``index``, on hosts shared with its peers."""
    d = f"d{index:05d}.bench.test"
    mxs = tuple(Mx(f"mx{n + 1}.{d}", 10 * (n + 1)) for n in range(mx_count))
    lines = "".join(f"mx: {mx.name}\n" for mx in mxs)
    return Scenario(
        domain=d,
        summary="benchmark: healthy enforce domain",
        expected=frozenset(),
        stage="enforce",
        policy=f"version: STSv1\nmode: enforce\n{lines}max_age: 604800\n",
        mx=mxs,
        shared=True,
    )
