"""Print CONFORMANCE.md: ``python -m harness.catalogue > CONFORMANCE.md``."""

from ._catalogue import render_markdown

if __name__ == "__main__":
    print(render_markdown(), end="")
