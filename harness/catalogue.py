"""Print CONFORMANCE.md: ``python -m realtime_conformance.harness.catalogue > CONFORMANCE.md``."""

from realtime_conformance.harness.judging.catalogue import render_markdown

if __name__ == "__main__":
    print(render_markdown(), end="")
