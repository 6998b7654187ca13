"""The upload page as a benchmark client: one file through the page in headless Chromium.

:func:`upload_with_page` opens an upload link in Debian's Chromium (driven by
Playwright), chooses the file, and waits until the page shows the file as
verified by the gateway ("✓ Verified": the receipt's SHA-256 equals the one
the page computed). It reports how long that took, the page's SHA-256, the
longest main-thread task the browser saw (``PerformanceObserver`` with
``longtask`` entries, 50 ms and more; 0 when there were none), the peak of
the page's JavaScript heap (``performance.memory``, sampled every 50 ms with
precise memory info on), how many partial uploads the page cut the file into
and the round trip it measured to decide that (``data-rtt``; -1 if unknown).

Run as ``python -m bench.page_client LINK FILE``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-precise-memory-info",
]
TIMEOUT_MS = 3 * 3600 * 1000

# Runs in the page before its own script: watches long tasks and the JS heap.
PROBE = """
(() => {
  const probe = window.__pageProbe = { longest: 0, longTasks: 0, peakHeap: 0 };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        probe.longTasks += 1;
        probe.longest = Math.max(probe.longest, e.duration);
      }
    }).observe({ type: 'longtask', buffered: true });
  } catch (e) { probe.longest = -1; }
  const sample = () => {
    const heap = performance.memory ? performance.memory.usedJSHeapSize : 0;
    probe.peakHeap = Math.max(probe.peakHeap, heap);
  };
  sample();
  setInterval(sample, 50);
})();
"""


def upload_with_page(
    page_url: str, path: Path, chromium: str = "/usr/bin/chromium"
) -> dict[str, Any]:
    """Upload ``path`` through the page at ``page_url``; seconds, sha256 and the page's costs."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.add_init_script(PROBE)
            page.goto(page_url)
            page.wait_for_selector("#app[data-ready='true']", state="attached")
            started = time.perf_counter()
            page.set_input_files("#files", str(path))
            page.wait_for_function(
                """() => { const r = document.querySelector('li.row');
                           return r && (r.dataset.verified || r.dataset.state === 'failed'); }""",
                timeout=TIMEOUT_MS,
                polling=100,
            )
            row = page.locator("li.row").first
            seconds = time.perf_counter() - started
            if row.get_attribute("data-verified") != "true":
                state = row.locator(".state").text_content()
                raise RuntimeError(f"the page did not verify {path.name}: {state!r}")
            probe = page.evaluate("() => window.__pageProbe")
            rtt = page.locator("#app").get_attribute("data-rtt") or ""
            return {
                "seconds": seconds,
                "sha256": row.get_attribute("data-sha256"),
                "parts": int(row.get_attribute("data-parts") or 1),
                "rtt_ms": float(rtt) if rtt.replace(".", "", 1).isdigit() else -1.0,
                "longest_task_ms": float(probe["longest"]),
                "peak_js_heap_bytes": int(probe["peakHeap"]),
            }
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.page_client", description=__doc__)
    parser.add_argument("link", help="an upload link (GET /u/{token})")
    parser.add_argument("file", type=Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    result = upload_with_page(args.link, args.file, args.chromium)
    size = args.file.stat().st_size
    result["mb_per_s"] = size / result["seconds"] / 1e6
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
