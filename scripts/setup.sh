# Sourced by the other scripts: make .venv with stspilot and its test tools, plus the Debian
# packages the end-to-end tests drive (Dovecot for IMAP, Caddy + pebble for on-demand TLS,
# Chromium for the dashboard, Knot/BIND/PowerDNS for publishing). Idempotent and quiet when
# everything is there.
need_apt=()
command -v dovecot >/dev/null 2>&1 || need_apt+=(dovecot-imapd)
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
command -v pebble >/dev/null 2>&1 || need_apt+=(pebble)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# Authoritative DNS servers the publish tests update (RFC 2136 + TSIG, NOTIFY/AXFR).
command -v knotd >/dev/null 2>&1 || need_apt+=(knot knot-dnsutils)
command -v named >/dev/null 2>&1 || need_apt+=(bind9)
command -v pdns_server >/dev/null 2>&1 || need_apt+=(pdns-server pdns-backend-sqlite3)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "installing Debian packages: ${need_apt[*]}" >&2
    apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null; } \
      || echo "warning: could not install ${need_apt[*]}; the tests that need them will skip" >&2
  else
    echo "warning: not root, cannot install ${need_apt[*]}; the tests that need them will skip" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "installing Python packages into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v -i 'warning' >&2 || true
  .venv/bin/python -c "import stspilot, pytest, hypothesis, psycopg" && touch .venv/.installed
fi
