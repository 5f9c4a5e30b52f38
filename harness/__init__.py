"""Conformance harness for multi-tenant Socket.IO event gateways."""
