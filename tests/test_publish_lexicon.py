"""dns-lexicon's PowerDNS provider against a real PowerDNS (gsqlite3 + HTTP API) on loopback:
replace without ever two v=STSv1 records, read back from the server itself, verified; an API
refusal (a wrong key: HTTP 401) in one line; and the manual provider waiting for a change."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stspilot.errors import ConfigError, PublishError
from stspilot.lab.authdns import (
    AuthServer,
    LabZone,
    create_pdns_zone,
    free_port,
    pdns_available,
    start_pdns,
)
from stspilot.publish.config import ZoneConfig
from stspilot.publish.manual import ManualProvider
from stspilot.publish.providers import STS_PREFIX, TxtChange, change_txt
from stspilot.publish.verify import NameServer, VerifyOptions, verify_txt

ZONE = "lexicon.test"
STS = f"_mta-sts.{ZONE}."
API_KEY = "test-api-key"

# Not imported here: importing lexicon at collection time lets hypothesis' scan of sys.modules
# touch its deprecated attributes (a DeprecationWarning, an error under filterwarnings).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lexicon") is None,
    reason="dns-lexicon is not installed (pip install 'stspilot[publish]')",
)


@dataclass
class Pdns:
    server: AuthServer
    port: int
    api_port: int

    @property
    def ns(self) -> NameServer:
        return NameServer("ns1", self.server.address, self.port)

    def zone(self, api_key: str = API_KEY) -> ZoneConfig:
        return ZoneConfig(
            ZONE,
            "lexicon",
            {
                "lexicon_provider": "powerdns",
                "primary": self.server.address,
                "nameserver_port": self.port,
                "pdns_server": f"http://{self.server.address}:{self.api_port}",
                "auth_token": api_key,
            },
        )


@pytest.fixture
def pdns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pdns]:
    if not pdns_available():
        pytest.skip("PowerDNS is not installed (scripts/setup.sh installs pdns-server)")
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8,localhost")
    port = free_port("127.0.0.1")
    api_port = free_port("127.0.0.1")
    server = start_pdns(tmp_path / "pdns", "127.0.0.1", port, api_port, api_key=API_KEY)
    try:
        create_pdns_zone(server, api_port, API_KEY, LabZone(ZONE, (("ns1", "127.0.0.1"),)))
        yield Pdns(server, port, api_port)
    finally:
        server.stop()


async def test_lexicon_powerdns_replaces_and_verifies(pdns: Pdns) -> None:
    from stspilot.publish.lexicon import LexiconProvider

    provider = LexiconProvider(pdns.zone(), pdns.ns)
    try:
        for value, before in (("v=STSv1; id=1", None), ("v=STSv1; id=2", "v=STSv1; id=1")):
            change = TxtChange(STS, STS_PREFIX, value, ttl=300)
            result = await change_txt(provider, change, expected=[before])
            assert result.written and result.after.values(STS_PREFIX) == (value,)
            await verify_txt((pdns.ns,), change, options=VerifyOptions(timeout=10, interval=0.1))
        removed = await change_txt(provider, TxtChange(STS, STS_PREFIX, None))
        assert removed.after.values(STS_PREFIX) == ()
    finally:
        await provider.aclose()


async def test_lexicon_api_refusal_is_one_line(pdns: Pdns) -> None:
    from stspilot.publish.lexicon import LexiconProvider

    provider = LexiconProvider(pdns.zone(api_key="wrong"), pdns.ns)
    with pytest.raises(PublishError) as caught:
        await change_txt(provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"))
    assert caught.value.answer.startswith("HTTP 401")
    assert "\n" not in str(caught.value)


def test_unknown_lexicon_provider_is_a_config_error(tmp_path: Path) -> None:
    from stspilot.publish.lexicon import LexiconProvider

    zone = ZoneConfig(ZONE, "lexicon", {"lexicon_provider": "no-such-dns", "primary": "127.0.0.1"})
    with pytest.raises(ConfigError, match="no provider 'no-such-dns'"):
        LexiconProvider(zone, NameServer("ns1", "127.0.0.1"))


async def test_manual_provider_prints_the_change_and_waits_until_it_is_served(
    pdns: Pdns,
) -> None:
    from stspilot.publish.lexicon import LexiconProvider

    shown: list[str] = []
    manual = ManualProvider(ZONE, pdns.ns, show=shown.append, timeout=20, interval=0.1)
    change = TxtChange(STS, STS_PREFIX, "v=STSv1; id=42", ttl=300)
    helper = LexiconProvider(pdns.zone(), pdns.ns)  # "the person" makes the change

    async def person() -> None:
        await asyncio.sleep(0.5)
        await helper.write_txt(change, await helper.read_txt(STS))

    acting = asyncio.create_task(person())
    result = await change_txt(manual, change)
    await acting
    await helper.aclose()
    assert result.after.values(STS_PREFIX) == ("v=STSv1; id=42",)
    assert f'add:    {STS} 300 IN TXT "v=STSv1; id=42"' in shown[0]
    assert any("still serves no record" in line for line in shown[1:])
    impatient = ManualProvider(ZONE, pdns.ns, show=None, timeout=0.3, interval=0.1)
    with pytest.raises(PublishError, match="not visible"):
        await change_txt(impatient, TxtChange(STS, STS_PREFIX, "v=STSv1; id=43"))
