"""Judging: the catalogue, the delivery checks over a history, and verdicts per requirement."""
