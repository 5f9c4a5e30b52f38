"""realtime-conformance: a conformance harness for multi-tenant Socket.IO event gateways.

One distribution, one top-level name. Its parts live in the repository's own folders and
are mapped here by packaging (pyproject.toml):

- ``realtime_conformance.harness``: the pytest plugin and the public API for suite authors;
- ``realtime_conformance.suites``: the conformance suites (``realtime-conformance`` runs them);
- ``realtime_conformance.contract``: the AsyncAPI contract both sides read;
- ``realtime_conformance.gateway``: the reference gateway (needs the ``gateway`` extra;
  it never imports the harness, and the harness never imports it).

Nothing is imported here, so ``python -m realtime_conformance.gateway`` loads no harness code.
"""
