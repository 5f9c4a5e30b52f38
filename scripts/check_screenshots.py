"""Open a compliance.html in the run's Chromium and check every embedded screenshot decodes.

CI runs it after the browser checks: ``python scripts/check_screenshots.py reports/browser/compliance.html
--min N``. It fails when fewer than N images are in the file or any has naturalWidth 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from realtime_conformance.harness.wire.browser import find_browser, playwright_api


async def _widths(report: Path, executable: str) -> list[tuple[str, int]]:
    api = playwright_api()
    async with api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(report.resolve().as_uri(), wait_until="load")
            # lazy images decode once scrolled to; make every one eager first
            return await page.evaluate("""async () => {
                const imgs = [...document.querySelectorAll('.shots img')];
                imgs.forEach(i => { i.loading = 'eager'; });
                await Promise.all(imgs.map(i => i.decode().catch(() => null)));
                return imgs.map(i => [i.alt, i.naturalWidth]);
            }""")
        finally:
            await browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--min", type=int, default=1, help="at least this many screenshots")
    parser.add_argument("--browser-path", default=None)
    args = parser.parse_args(argv)
    widths = asyncio.run(_widths(args.report, find_browser(args.browser_path)))
    for alt, width in widths:
        print(f"{width:5d}px  {alt}")
    broken = [alt for alt, width in widths if width <= 0]
    if len(widths) < args.min or broken:
        print(f"FAIL: {len(widths)} screenshot(s), at least {args.min} expected; not decoded: {broken}", file=sys.stderr)
        return 1
    print(f"OK: {len(widths)} screenshot(s), each decoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
