"""Print CONFORMANCE.md: ``python -m realtime_conformance.harness.catalogue > CONFORMANCE.md``.

With the argument ``capabilities`` it prints README's table of ``--lacks`` capabilities instead.
"""

import sys

from realtime_conformance.harness.judging.catalogue import render_markdown

if __name__ == "__main__":
    if sys.argv[1:] == ["capabilities"]:
        from realtime_conformance.harness.capabilities import render_markdown as capability_table
        print(capability_table(), end="")
    elif sys.argv[1:]:
        sys.exit(f"usage: python -m realtime_conformance.harness.catalogue [capabilities] (not {' '.join(sys.argv[1:])!r})")
    else:
        print(render_markdown(), end="")
