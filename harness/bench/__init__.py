"""The bench: how a gateway behaves at realistic fan-out and rate, and whether it stays correct.

Not a conformance check and never part of ``-m realtime``: it records numbers, it does not judge.
One job per module: ``options`` (the bench's settings), ``profiles`` (named step lists),
``stats`` (percentiles, correctness counts, ratios), ``resources`` (CPU and memory of processes),
``load`` (one step against one gateway), ``targets`` (the gateways on one shared broker),
``runner`` (steps across targets), ``report`` (bench.json and bench.html), ``session``
(the pytest entry that ``realtime-conformance bench`` runs). docs/bench.md explains the fields.
"""
