"""The simulated world (DNS, policy hosts, MX hosts on loopback) for tests, benchmarks and demos."""

from __future__ import annotations

from stspilot.lab.certs import CertKind
from stspilot.lab.dkim_keys import LabDkimKey, make_dkim_key
from stspilot.lab.dns_server import DnsFault, Record
from stspilot.lab.https_host import HttpBehaviour
from stspilot.lab.scenarios import BY_DOMAIN, SCENARIOS, Mx, PolicyHost, Scenario, healthy
from stspilot.lab.smtp_host import SmtpBehaviour
from stspilot.lab.world import Lab, LabInfo, start_lab

__all__ = [
    "BY_DOMAIN",
    "SCENARIOS",
    "CertKind",
    "DnsFault",
    "HttpBehaviour",
    "Lab",
    "LabDkimKey",
    "LabInfo",
    "Mx",
    "PolicyHost",
    "Record",
    "Scenario",
    "SmtpBehaviour",
    "healthy",
    "make_dkim_key",
    "start_lab",
]
