"""The only code that touches the network: DNS (resolver), HTTPS (fetch), SMTP (smtp), TLS (tls).

Everything here is ``async``; what a probe saw is handed on as plain values (``stspilot.facts``).
"""
