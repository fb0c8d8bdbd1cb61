"""The publish config: providers per zone, secrets only from the environment or owner-only
files, refusals with the fix in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from stspilot.errors import ConfigError
from stspilot.lab.authdns import make_secret
from stspilot.publish.config import load_config

SECRET = make_secret()


def write(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "publish.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


ZONES = """
[zones."example.com"]
provider = "rfc2136"
server = "192.0.2.53"
key_name = "stspilot"
{secret}

[zones."sub.example.com"]
provider = "manual"
primary = "192.0.2.54"

[domains."shop.example.com"]
policy = "hosted"
"""


def test_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TSIG_TEST_SECRET", SECRET)
    config = load_config(
        write(tmp_path, ZONES.format(secret='key_secret_env = "TSIG_TEST_SECRET"'), 0o644)
    )
    domain = config.for_domain("example.com")
    rfc = domain.zone.rfc2136()
    assert rfc.key is not None and rfc.key.secret == SECRET and rfc.server == "192.0.2.53"
    assert SECRET not in repr(rfc)
    assert domain.policy == "elsewhere"  # the safe default: stspilot only waits
    monkeypatch.delenv("TSIG_TEST_SECRET")
    with pytest.raises(ConfigError, match=r"\$TSIG_TEST_SECRET is not set"):
        domain.zone.rfc2136()


def test_the_longest_configured_zone_wins(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONES.format(secret="")))
    assert config.for_domain("mail.sub.example.com").zone.zone == "sub.example.com"
    shop = config.for_domain("shop.example.com")
    assert shop.zone.zone == "example.com" and shop.policy == "hosted"
    assert config.for_domain("shop.example.com", policy="webroot:/srv").policy == "webroot:/srv"
    with pytest.raises(ConfigError, match=r"no DNS provider configured for other\.org"):
        config.for_domain("other.org")
    with pytest.raises(ConfigError, match="configured for rfc2136"):
        config.for_domain("example.com", dns="lexicon")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_secret_files_others_can_read_are_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "tsig.key"
    key.write_text(SECRET)
    key.chmod(mode)
    config = load_config(write(tmp_path, ZONES.format(secret=f'key_secret_file = "{key}"')))
    with pytest.raises(ConfigError, match=f"readable by others .*chmod 600 {key}"):
        config.for_domain("example.com").zone.rfc2136()
    key.chmod(0o600)
    rfc = config.for_domain("example.com").zone.rfc2136()
    assert rfc.key is not None and rfc.key.secret == SECRET


def test_an_inline_secret_only_in_a_private_config_file(tmp_path: Path) -> None:
    text = ZONES.format(secret=f'key_secret = "{SECRET}"')
    shared = load_config(write(tmp_path, text, 0o644))
    with pytest.raises(ConfigError, match=r"config file .* readable by others"):
        shared.for_domain("example.com").zone.rfc2136()
    private = load_config(write(tmp_path, text, 0o600))
    assert private.for_domain("example.com").zone.rfc2136().key is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[zones."a.test"]\nprovider = "ftp"\n', "provider must be one of"),
        ('[zones."a.test"]\nprovider = "rfc2136"\n', "needs server"),
        ('[zones."a.test"]\nserver = "192.0.2.1"\n', "needs a TSIG key"),
        ('[zones."a.test"]\nserver = "192.0.2.1"\nkey_name = "k"\n', "key_secret_env or"),
        ("not toml = = =", "publish.toml"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text)).for_domain("a.test").zone.rfc2136()


def test_an_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no publish config"):
        load_config(tmp_path / "absent.toml")
