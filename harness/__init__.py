"""The public API of the conformance harness: what a suite author may import.

Suites in ``realtime_conformance.suites`` use nothing else, and neither need checks of your
own (docs/writing-checks.md shows one). Everything in the role folders below is internal:

- ``providers/``: the target (broker and gateway as processes, containers or URLs);
- ``wire/``: clients that talk to it (Socket.IO tabs, AMQP publisher, REST, fault proxy, tokens);
- ``judging/``: the catalogue, the checks over a history, verdicts;
- ``report/``: compliance.json, compliance.html, the terminal summary.

``plugin.py`` wires them to pytest; ``cli.py`` is the ``realtime-conformance`` command.
"""

from __future__ import annotations

from realtime_conformance.harness import samples
from realtime_conformance.harness.judging.catalogue import REQUIREMENTS, Requirement
from realtime_conformance.harness.judging.checks import CheckResult, canonical, check
from realtime_conformance.harness.judging.conformance import Conformance
from realtime_conformance.harness.judging.failures import ConformanceFailure, UnknownEvidence, Violation
from realtime_conformance.harness.providers.memory import MemoryReading, gateway_memory
from realtime_conformance.harness.providers.target import Cluster, Instance, WrongQueue, wait_for_consumer
from realtime_conformance.harness.report.render import latency_summary
from realtime_conformance.harness.wire.clients import Received, TenantClient
from realtime_conformance.harness.judging.verdicts import NA_PREFIX
from realtime_conformance.harness.wire import rawclient
from realtime_conformance.harness.wire.floods import Flood, FloodPlan, FloodReport
from realtime_conformance.harness.wire.idle import IdleEvidence
from realtime_conformance.harness.wire.liveness import Liveness, LivenessReport, exit_status
from realtime_conformance.harness.wire.logwindow import GatewayLog, LogSlice
from realtime_conformance.harness.wire.portal import PortalTab, ReconnectPolicy
from realtime_conformance.harness.wire.proxy import FaultProxy
from realtime_conformance.harness.wire.publisher import Publisher
from realtime_conformance.harness.wire.rawclient import HandshakeFailed, RawResponse, RawWebSocket, http_request, send_raw
from realtime_conformance.harness.wire.refusals import refusal_code
from realtime_conformance.harness.wire.rest import RestClient
from realtime_conformance.harness.wire.scenario import Publish, Scenario, unique_tenant
from realtime_conformance.harness.wire.silent import SilentEvidence
from realtime_conformance.harness.wire.tokens import TokenFactory
from realtime_conformance.harness.wire.waits import LATE_CAP_S

__all__ = [
    "CheckResult", "Cluster", "Conformance", "ConformanceFailure", "FaultProxy", "Flood", "FloodPlan",
    "FloodReport", "GatewayLog", "HandshakeFailed", "IdleEvidence",
    "Instance", "LATE_CAP_S", "Liveness", "LivenessReport", "LogSlice", "MemoryReading", "NA_PREFIX", "PortalTab",
    "Publish", "RawResponse", "RawWebSocket",
    "Publisher", "REQUIREMENTS", "ReconnectPolicy", "Received", "Requirement", "RestClient", "Scenario", "SilentEvidence",
    "TenantClient", "TokenFactory", "UnknownEvidence", "Violation", "WrongQueue", "canonical", "latency_summary",
    "check", "exit_status", "gateway_memory", "http_request", "rawclient", "refusal_code", "samples", "send_raw", "unique_tenant", "wait_for_consumer",
]
