# Sourced by the other scripts: make .venv with stspilot and its test tools, plus the Debian
# packages the end-to-end tests drive (Dovecot for IMAP). Idempotent and quiet when done.
need_apt=()
command -v dovecot >/dev/null 2>&1 || need_apt+=(dovecot-imapd)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need_apt[@]}" >/dev/null; }
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import stspilot, pytest, hypothesis, psycopg" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v -i 'warning' >&2 || true
  touch .venv/.installed
fi
