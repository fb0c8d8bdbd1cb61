# Sourced by the other scripts: make .venv with stspilot. Two kinds, by $STSPILOT_SETUP:
#   dev (the default; scripts/test, and `source scripts/setup.sh` by hand): stspilot[dev],
#       every test tool, plus the Debian packages the end-to-end tests drive (Dovecot for
#       IMAP, Caddy + pebble for on-demand TLS, Chromium for the dashboard,
#       Knot/BIND/PowerDNS for publishing).
#   run (scripts/run, the README's main job): stspilot[lab] only, no Debian packages.
# Idempotent and quiet when everything is there.
setup_kind="${STSPILOT_SETUP:-dev}"

# --- Debian packages for the tests (dev only) ------------------------------------------------
if [ "$setup_kind" = dev ]; then
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
fi

# --- the Python environment --------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ "$setup_kind" = dev ]; then
  setup_extras=dev setup_mark=.venv/.installed setup_probe="import stspilot, pytest, hypothesis, psycopg, trustme"
else  # the main job: the lab world and the report tools; a dev install covers it too
  setup_extras=lab setup_mark=.venv/.installed-run setup_probe="import stspilot, trustme"
  [ -f .venv/.installed ] && [ ! pyproject.toml -nt .venv/.installed ] && setup_mark=.venv/.installed
fi
if [ ! -f "$setup_mark" ] || [ pyproject.toml -nt "$setup_mark" ]; then
  echo "installing Python packages into .venv (stspilot[$setup_extras])" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e ".[$setup_extras]" 2>&1 | grep -v -i 'warning' >&2 || true
  .venv/bin/python -c "$setup_probe" && touch "$setup_mark"
fi
