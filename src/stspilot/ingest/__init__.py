"""Ingest: turn bytes from files, mailboxes, SMTP and HTTPS into stored TLS-RPT reports."""
