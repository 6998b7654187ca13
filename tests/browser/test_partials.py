"""The page's parallel partial uploads (tus concatenation), against a real gateway.

A file goes up as several partial uploads at once, joined by a final upload.
These tests drive the page through its whole life with partials: a 200 MiB
file at the default settings, pause and resume, a reload mid-upload, cancel
(and what `gateway sweep` then leaves), and a connection that the network
proxy (``bench/netproxy.py``) stalls. Small files are cut into partials with
the page's ``?streams=N`` knob and slowed down with Chromium's own latency
emulation, so mid-upload states are observable on loopback. What the
gateway received is read from its metrics, never inferred from timing.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from bench.netproxy import ProxyThread
from tests.browser.conftest import screenshot
from tests.browser.test_upload import (
    LONG,
    MiB,
    assert_one_comment_line_per_file,
    expect_delivered,
    make_file,
    open_page,
    row,
    throttle,
    unthrottle,
    wait_sent,
)
from tests.support.gateway import GatewayProcess, run_sweep, tus_bytes_received

pytestmark = pytest.mark.browser

TUS = {"Tus-Resumable": "1.0.0"}


def open_with(page: Page, link: str, **query: int) -> None:
    page.goto(link + "?" + "&".join(f"{k}={v}" for k, v in query.items()))
    expect(page.locator("#app")).to_have_attribute("data-ready", "true")


def saved(page: Page, name: str) -> dict[str, Any]:
    """The page's remembered state of an unfinished file (localStorage)."""
    state = page.evaluate(
        """(name) => {
             for (let i = 0; i < localStorage.length; i++) {
               const v = JSON.parse(localStorage.getItem(localStorage.key(i)));
               if (v && v.name === name) return v;
             }
             return null;
           }""",
        name,
    )
    assert state, f"no remembered upload for {name}"
    return dict(state)


def wait_parts(page: Page, name: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + LONG / 1000
    while True:
        state = page.evaluate("() => localStorage.length") and saved(page, name)
        parts = state.get("parts", []) if state else []
        if len(parts) == count and all(p["url"] for p in parts):
            return list(parts)
        assert time.monotonic() < deadline, state
        page.wait_for_timeout(100)


def offsets(parts: list[dict[str, Any]]) -> list[int]:
    """What the gateway holds of each partial upload (tus HEAD)."""
    held = []
    for part in parts:
        r = httpx.head(part["url"], headers=TUS)
        assert r.status_code == 200, r.status_code
        assert r.headers["Upload-Concat"] == "partial"
        held.append(int(r.headers["Upload-Offset"]))
    return held


class Patches:
    """Every PATCH the page sends: (upload URL, Upload-Offset)."""

    def __init__(self, page: Page) -> None:
        self.sent: list[tuple[str, int]] = []
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.method == "PATCH":
            self.sent.append((request.url, int(request.headers["upload-offset"])))


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


@pytest.mark.parametrize("where", ["near", "far"])
def test_a_200_mib_file_at_the_defaults_is_verified_in_as_many_uploads_as_pay_off(
    where: str, request: pytest.FixtureRequest, page: Page, tmp_path: Path
) -> None:
    """The page's defaults, as a partner gets them: to a gateway close by (loopback) the
    file goes as one upload in one streamed PATCH; through 25 ms each way (the network
    proxy) it goes as four partial uploads at once, each one PATCH."""
    if where == "near":
        gateway: GatewayProcess = request.getfixturevalue("gateway_file")
    else:
        gateway, proxy = request.getfixturevalue("proxied_gateway")
    path = make_file(tmp_path, "vm-snapshot.qcow2", 200 * MiB + 12345)
    patches = Patches(page)
    link = gateway.link("7200")
    open_page(page, link)
    expect(page.locator("#app")).to_have_attribute("data-link-concurrency", "8")
    page.set_input_files("#files", str(path))
    r = row(page, path.name)
    expect(r).to_have_attribute("data-status", "delivered", timeout=10 * LONG)
    expect(r.locator(".state")).to_have_text("Stored, link posted on the ticket")
    expect(r).to_have_attribute("data-verified", "true")
    expect(r.locator(".hash code")).to_have_text(sha256sum(path))
    expect(r).to_have_attribute("data-hashing", "worker-wasm")
    rtt = float(page.locator("#app").get_attribute("data-rtt") or "nan")
    uploads = 1 if where == "near" else 4
    assert (rtt < 30) if where == "near" else (rtt >= 50), rtt
    expect(r).to_have_attribute("data-parts", str(uploads))
    screenshot(page, f"12-defaults-{where}")
    assert len({url for url, _ in patches.sent}) == uploads
    assert len(patches.sent) == uploads  # each range in one PATCH: no stop-and-wait
    assert tus_bytes_received(gateway) == path.stat().st_size  # no byte twice
    assert_one_comment_line_per_file(gateway, "7200", [path])
    assert page.evaluate("localStorage.length") == 0


def test_a_reload_resumes_every_partial_where_the_gateway_holds_it(
    gateway_file: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "logs-bundle.tar", 40 * MiB + 4321)
    size = path.stat().st_size
    open_with(page, gateway_file.link("7201"), chunk=MiB, streams=4)
    cdp = throttle(context, page)
    page.set_input_files("#files", str(path))
    parts = wait_parts(page, path.name, 4)
    wait_sent(page, path.name, 12 * MiB)
    page.reload()
    expect(page.locator("#app")).to_have_attribute("data-ready", "true")
    page.wait_for_timeout(500)  # requests cut by the reload have settled at the gateway
    held = offsets(parts)
    assert all(0 < h for h in held), held
    received_at_reload = tus_bytes_received(gateway_file)
    assert received_at_reload >= sum(held)
    unthrottle(cdp)
    patches = Patches(page)
    page.set_input_files("#files", str(path))
    expect_delivered(page, path, "Stored, link posted on the ticket", gateway_file)
    expect(row(page, path.name)).to_have_attribute("data-parts", "4")
    # Every partial went on from the offset the gateway held, none from 0 ...
    for part, at in zip(parts, held, strict=True):
        mine = [offset for url, offset in patches.sent if url == part["url"]]
        length = part["end"] - part["start"]
        if at == length:
            assert mine == [], part  # a finished partial got no PATCH at all
        else:
            assert mine and mine[0] == at, (part, at, mine)
    # ... and after the reload the gateway took in only what it did not hold.
    after = tus_bytes_received(gateway_file) - received_at_reload
    assert after == size - sum(held)
    assert_one_comment_line_per_file(gateway_file, "7201", [path])


def test_pause_holds_every_partial_and_resume_finishes_them(
    gateway_file: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "heap.hprof", 24 * MiB + 99)
    open_with(page, gateway_file.link("7202"), chunk=MiB, streams=3)
    cdp = throttle(context, page)
    page.set_input_files("#files", str(path))
    parts = wait_parts(page, path.name, 3)
    wait_sent(page, path.name, 4 * MiB)
    r = row(page, path.name)
    r.get_by_role("button", name=f"Pause {path.name}").click()
    expect(r).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(500)
    held = offsets(parts)
    page.wait_for_timeout(1000)
    assert offsets(parts) == held  # nothing moves while paused
    assert sum(held) < path.stat().st_size
    unthrottle(cdp)
    r.get_by_role("button", name=f"Resume {path.name}").click()
    expect_delivered(page, path, "Stored, link posted on the ticket", gateway_file)
    # Resumed, not restarted: at most the PATCHes cut by the pause (1 MiB each) came twice.
    assert tus_bytes_received(gateway_file) <= path.stat().st_size + 3 * MiB
    assert_one_comment_line_per_file(gateway_file, "7202", [path])


def test_cancel_terminates_every_partial_and_sweep_leaves_nothing(
    gateway_file: GatewayProcess, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    path = make_file(tmp_path, "capture.pcapng", 24 * MiB)
    deleted: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda resp: (
            deleted.append((resp.url, resp.status)) if resp.request.method == "DELETE" else None
        ),
    )
    open_with(page, gateway_file.link("7203"), chunk=MiB, streams=4)
    throttle(context, page)
    page.set_input_files("#files", str(path))
    parts = wait_parts(page, path.name, 4)
    wait_sent(page, path.name, 3 * MiB)
    r = row(page, path.name)
    r.get_by_role("button", name=f"Cancel {path.name}").click()
    expect(r).to_have_attribute("data-state", "canceled")
    # Each partial is terminated; a DELETE that meets the lease of the PATCH just aborted
    # (423) is repeated until the gateway removed it.
    deadline = time.monotonic() + 60
    while len([d for d in deleted if d[1] == 204]) < 4:
        assert time.monotonic() < deadline, deleted
        page.wait_for_timeout(100)
    assert sorted(d for d in deleted if d[1] == 204) == sorted((p["url"], 204) for p in parts)
    assert {status for _, status in deleted} <= {204, 423}
    assert page.evaluate("localStorage.length") == 0
    for part in parts:
        assert httpx.head(part["url"], headers=TUS).status_code in (404, 410)
    run_sweep(gateway_file)
    store = Path(gateway_file.env["GATEWAY_DATA_DIR"]) / "store"
    left = [
        p.relative_to(store)
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] in ("objects", "multipart", "parts")
    ]
    assert left == [], left


def test_a_stalled_connection_is_retried_and_the_file_completes(
    proxied_gateway: tuple[GatewayProcess, ProxyThread], page: Page, tmp_path: Path
) -> None:
    gateway, proxy = proxied_gateway
    path = make_file(tmp_path, "dump.tar.zst", 48 * MiB + 7)
    link = gateway.link("7204")
    assert link.startswith(proxy.url)
    open_with(page, link, stall=3000, streams=2)
    page.set_input_files("#files", str(path))
    r = row(page, path.name)
    wait_sent(page, path.name, 2 * MiB)
    # Stall the connections carrying PATCH bodies right now (they grew in the last 200 ms).
    before = {c.number: c.up.read for c in proxy.connections()}
    page.wait_for_timeout(200)
    busy = [c for c in proxy.connections() if not c.closed and c.up.read > before.get(c.number, 0)]
    assert busy
    for conn in busy:
        proxy.stall(conn)
    at_stall = {c.number: c.up.read for c in proxy.connections()}
    page.wait_for_function(
        """(name) => [...document.querySelectorAll('li.row')].some(r =>
             r.querySelector('.name').textContent === name &&
             /No progress for 3 s\\. Reconnecting in \\d+ s/.test(
               r.querySelector('.stats').textContent))""",
        arg=path.name,
        timeout=LONG,
    )
    screenshot(page, "13-reconnecting")
    proxy.release()  # the cut request reaches the gateway's end and frees the upload's lease
    expect_delivered(page, path, "Stored, link posted on the ticket", gateway)
    assert int(r.get_attribute("data-stalls") or 0) >= 1
    assert all(c.stalls == 1 for c in busy)
    # The retries went on other connections than the stalled ones.
    stalled = {c.number for c in busy}
    others = [c for c in proxy.connections() if c.number not in stalled]
    assert sum(c.up.read - at_stall.get(c.number, 0) for c in others) > 0
    assert_one_comment_line_per_file(gateway, "7204", [path])


SAMPLE_SIZES = [0, 1, 55, 56, 63, 64, 65, 1000, 4096 + 17, MiB + 3, 9 * MiB + 1]


def _sample(size: int) -> bytes:
    return bytes((i * 31 + 7) % 251 for i in range(size))


def hashes_in_page(page: Page) -> dict[str, Any]:
    """Whole-file digests and checksums of sample Blobs, through the page's own hashing."""
    url = page.evaluate(
        "() => document.querySelector('script[type=module]').src.replace('upload.js', 'hashing.js')"
    )
    result: dict[str, Any] = page.evaluate(
        """async ([url, sizes]) => {
             const { createHashing } = await import(url);
             const hashing = createHashing();
             const out = { kind: hashing.kind, whole: [], sums: [], kinds: [] };
             for (const n of sizes) {
               const bytes = new Uint8Array(n);
               for (let i = 0; i < n; i++) bytes[i] = (i * 31 + 7) % 251;
               const file = new File([bytes], 'sample.bin');
               const whole = await hashing.whole(file).promise;
               out.whole.push(whole.hex);
               out.kinds.push(whole.kind);
               out.sums.push(await hashing.checksum(file, Math.floor(n / 3), n));
             }
             return out;
           }""",
        [url, SAMPLE_SIZES],
    )
    return result


@pytest.mark.parametrize(
    ("init_script", "kind"),
    [
        (None, "worker-wasm"),
        ("delete window.Worker; delete window.WebAssembly;", "main-js"),
    ],
    ids=["worker", "fallback"],
)
def test_worker_and_fallback_hashing_agree_with_sha256sum(
    gateway_file: GatewayProcess,
    context: BrowserContext,
    page: Page,
    tmp_path: Path,
    init_script: str | None,
    kind: str,
) -> None:
    if init_script:
        context.add_init_script(init_script)
    open_page(page, gateway_file.link("7205"))
    expect(page.locator("#app")).to_have_attribute(
        "data-hashing", "worker" if kind.startswith("worker") else kind
    )
    got = hashes_in_page(page)
    assert got["kinds"] == [kind] * len(SAMPLE_SIZES)
    for size, whole, checksum in zip(SAMPLE_SIZES, got["whole"], got["sums"], strict=True):
        data = _sample(size)
        assert whole == hashlib.sha256(data).hexdigest(), size
        part = data[size // 3 :]
        assert checksum == base64.b64encode(hashlib.sha256(part).digest()).decode()
    # A real upload through that hashing: the receipt, the row and sha256sum agree.
    path = make_file(tmp_path, "sample.bin", 3 * MiB + 5)
    page.set_input_files("#files", str(path))
    expect_delivered(page, path, "Delivered to the ticket", gateway_file)
    expect(row(page, path.name)).to_have_attribute("data-hashing", kind)
    expect(row(page, path.name).locator(".hash code")).to_have_text(sha256sum(path))
