"""What the helpdesk emulators share: faults, request records, a subprocess and its control client.

An emulator is a Starlette app for one vendor's API wrapped in a :class:`Gate`
that records every API request and applies, before the vendor's routes see it:
an outage (``"503"`` with ``Retry-After``, or ``"drop"``: the socket is
aborted with no response), injected failures (``fail_next``), a rate limit
(429 with ``Retry-After``) and authentication. Errors come out in the vendor's
own shape (the emulator's ``State.error``). Control routes under
``/_emulator/`` pass straight through and are never recorded.

:func:`spawn` runs ``python -m MODULE`` (which binds 127.0.0.1 on a free
port, prints ``PORT <n>`` and serves until killed) and waits until it
answers; :class:`EmulatorClient` is the base of each emulator's control client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Faults:
    outage: str | None = None  # None, "503" or "drop"
    outage_retry_after: int = 1
    rate_limit: int | None = None  # API requests per window; None: no limit
    rate_window: float = 60.0
    # A queue of injected failures: [{"status", "count", "path", "method"}]
    fail_next: list[dict[str, Any]] = field(default_factory=list)


def authorization(header: str | None) -> tuple[str, str] | None:
    """An Authorization header as ``(scheme, value)``: the scheme lower-cased, a Basic
    value decoded to ``user:password``; None when absent or malformed."""
    if not header or " " not in header:
        return None
    scheme, value = header.split(" ", 1)
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    return scheme, value


def same_secret(given: str, expected: str) -> bool:
    """Compare credentials in constant time (any text, not only ASCII)."""
    return secrets.compare_digest(given.encode(), expected.encode())


class BaseState:
    """The common half of an emulator's state; subclasses add the vendor's records.

    A vendor with faults of its own (a size setting, a page size…) names a
    subclass of :class:`Faults` as ``faults_type``; ``/_emulator/faults`` sets
    its fields too.
    """

    faults_type: type[Faults] = Faults

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.faults = self.faults_type()
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.window: deque[float] = deque()
        self.rate_limited = 0
        self.dropped = 0

    # -- what each vendor defines ----------------------------------------------------
    def authenticate(self, header: str | None) -> bool:
        raise NotImplementedError

    def error(self, status: int, message: str, detail: str = "") -> Response:
        """An error response in the vendor's shape."""
        raise NotImplementedError

    def rate_headers(self) -> dict[str, str]:
        """Headers the vendor puts on every API response (rate-limit counters)."""
        return {}

    def snapshot(self, base: str) -> dict[str, Any]:
        return {
            "requests": list(self.requests),
            "counts": dict(self.counts),
            "statuses": dict(self.statuses),
            "rate_limited": self.rate_limited,
            "dropped": self.dropped,
            "auth_kinds": dict(Counter(r["auth"] for r in self.requests)),
        }

    # -- shared ---------------------------------------------------------------------------
    @staticmethod
    def auth_kind(header: str | None) -> str:
        if not header:
            return "none"
        scheme = header.split(" ", 1)[0].lower()
        return scheme if scheme in ("bearer", "basic") else "other"

    def over_rate(self) -> int | None:
        """Seconds until a slot frees, if this request is over the rate limit."""
        limit = self.faults.rate_limit
        if limit is None:
            return None
        now = time.monotonic()
        while self.window and self.window[0] <= now - self.faults.rate_window:
            self.window.popleft()
        if len(self.window) >= limit:
            return max(1, math.ceil(self.window[0] + self.faults.rate_window - now))
        self.window.append(now)
        return None


class Gate:
    """Records every API request and applies outages, injected faults, rate limit and auth."""

    def __init__(
        self,
        app: Starlette,
        state: BaseState,
        routes: list[Route],
        public_paths: tuple[str, ...] = (),
        connections: Callable[[], Iterable[Any]] | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.routes = routes
        self.public_paths = public_paths
        self.connections = connections

    def _endpoint(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                # A format suffix (``.json``) a route accepts is not part of its name.
                return f"{scope['method']} {route.path.replace('{ext:path}', '')}"
        return f"{scope['method']} {scope['path']}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator/"):
            await self.app(scope, receive, send)
            return
        state = self.state
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization")
        endpoint = self._endpoint(scope)
        record: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "endpoint": endpoint,
            "auth": state.auth_kind(auth),
            "content_type": headers.get("content-type"),
            "content_length": headers.get("content-length"),
            "transfer_encoding": headers.get("transfer-encoding"),
            "status": None,
        }
        state.requests.append(record)
        state.counts[endpoint] += 1

        if state.faults.outage == "drop":
            record["status"] = "dropped"
            state.dropped += 1
            await self._drop(scope, receive)
            return
        response: Response | None = None
        if state.faults.outage == "503":
            response = state.error(503, "Service Unavailable", "The instance is under maintenance")
            response.headers["Retry-After"] = str(state.faults.outage_retry_after)
        if response is None:
            response = self._injected(scope)
        public = endpoint.split(" ", 1)[1] in self.public_paths
        if response is None and not public and not state.authenticate(auth):
            response = state.error(401, "unauthorized", "")
        if response is None and not public:
            wait = state.over_rate()
            if wait is not None:
                state.rate_limited += 1
                response = state.error(429, "Too Many Requests", "Rate limit exceeded")
                response.headers["Retry-After"] = str(wait)
        if response is not None:
            response.headers.update(state.rate_headers())
            await self._drain(receive)
            await response(scope, receive, send)
            self._done(record, response.status_code)
            return

        extra = [(k.lower().encode(), v.encode()) for k, v in state.rate_headers().items()]

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._done(record, message["status"])
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, recording_send)

    def _done(self, record: dict[str, Any], status: int) -> None:
        record["status"] = status
        self.state.statuses[str(status)] += 1

    def _injected(self, scope: Scope) -> Response | None:
        for fault in self.state.faults.fail_next:
            if fault["path"] in scope["path"] and fault["method"] in ("", scope["method"]):
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.state.faults.fail_next.remove(fault)
                status = fault["status"]
                response = self.state.error(
                    status, "Injected failure", f"Injected failure {status}"
                )
                if status in (429, 503):
                    response.headers["Retry-After"] = str(self.state.faults.outage_retry_after)
                return response
        return None

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read the request body so a keep-alive connection stays usable."""
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        client = scope.get("client")
        target = None
        for conn in self.connections() if self.connections else ():
            if getattr(conn, "client", None) is not None and tuple(conn.client) == tuple(
                client or ()
            ):
                target = conn
                break
        if target is None:
            raise RuntimeError("drop mode needs the emulator to run under serve()")
        target.transport.abort()
        for _ in range(1000):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
        await asyncio.sleep(0)


# -- control routes every emulator has ------------------------------------------------


def _state(request: Request) -> BaseState:
    state: BaseState = request.app.state.emulator
    return state


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def control_reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


async def control_faults(request: Request) -> Response:
    """Set any field of the emulator's faults but ``fail_next``: outage, outage_retry_after,
    rate_limit, rate_window, and whatever a vendor's faults add."""
    faults = _state(request).faults
    data = await request.json()
    if "outage" in data and data["outage"] not in (None, "503", "drop"):
        return JSONResponse({"error": "outage must be null, '503' or 'drop'"}, status_code=400)
    unknown = [k for k in data if k == "fail_next" or not hasattr(faults, k)]
    if unknown:
        return JSONResponse({"error": f"unknown faults {unknown}"}, status_code=400)
    for name, value in data.items():
        current = getattr(faults, name)
        if value is not None and current is not None:
            value = type(current)(value)
        setattr(faults, name, value)
    return JSONResponse({"ok": True})


async def control_fail_next(request: Request) -> Response:
    data = await request.json()
    _state(request).faults.fail_next.append(
        {
            "status": int(data.get("status", 500)),
            "count": int(data.get("count", 1)),
            "path": str(data.get("path", "")),
            "method": str(data.get("method", "")).upper(),
        }
    )
    return JSONResponse({"ok": True})


async def control_state(request: Request) -> Response:
    return JSONResponse(_state(request).snapshot(str(request.base_url).rstrip("/")))


CONTROL_ROUTES = [
    Route("/_emulator/health", control_health, methods=["GET"]),
    Route("/_emulator/reset", control_reset, methods=["POST"]),
    Route("/_emulator/faults", control_faults, methods=["POST"]),
    Route("/_emulator/fail_next", control_fail_next, methods=["POST"]),
    Route("/_emulator/state", control_state, methods=["GET"]),
]


def create_app(
    state: BaseState,
    api_routes: list[Route],
    control_routes: list[Route],
    *,
    public_paths: tuple[str, ...] = (),
    connections: Callable[[], Iterable[Any]] | None = None,
) -> ASGIApp:
    inner = Starlette(routes=[*api_routes, *CONTROL_ROUTES, *control_routes])
    inner.state.emulator = state
    return Gate(inner, state, api_routes, public_paths, connections)


def serve(build: Callable[[Callable[[], Iterable[Any]]], ASGIApp]) -> None:
    """Bind 127.0.0.1 on a free port, print ``PORT <n>``, serve ``build(connections)``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    holder: dict[str, Any] = {}

    def connections() -> Iterable[Any]:
        server = holder.get("server")
        return list(server.server_state.connections) if server is not None else []

    config = uvicorn.Config(
        build(connections), log_level="warning", access_log=False, lifespan="off",
        timeout_keep_alive=30,
    )  # fmt: skip
    server = uvicorn.Server(config)
    holder["server"] = server
    server.run(sockets=[sock])


def spawn(
    module: str, name: str, log_dir: Path, env: dict[str, str], timeout: float = 20.0
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``python -m module`` and wait until its control API answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-emulator.log"
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env=full_env,
            stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    process.stdout.close()
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        raise RuntimeError(f"{name} emulator did not start:\n" + log_path.read_text()[-2000:])
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/_emulator/health", timeout=1.0).status_code == 200:
                return process, url, log_path
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"{name} emulator did not answer; see {log_path}")
        time.sleep(0.05)


class EmulatorClient:
    """The control half every emulator client shares (the test-side helpdesk Protocol)."""

    name = ""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self._http = httpx.Client(base_url=url, timeout=30.0)

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._http.post(f"/_emulator/{path}", json=payload or {})
        response.raise_for_status()
        return response.json()

    def _get(self, path: str) -> Any:
        response = self._http.get(f"/_emulator/{path}")
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._post("reset")

    def outage(self, mode: str | None, retry_after: int = 1) -> None:
        """``"503"`` (Retry-After), ``"drop"`` (close the socket, no response) or None."""
        self._post("faults", {"outage": mode, "outage_retry_after": retry_after})

    def fail_next(self, status: int, count: int = 1, path: str = "", method: str = "") -> None:
        """Answer the next ``count`` API requests matching ``path``/``method`` with ``status``."""
        self._post("fail_next", {"status": status, "count": count, "path": path, "method": method})

    def set_rate_limit(self, limit: int | None, window: float = 60.0) -> None:
        """At most ``limit`` API requests per ``window`` seconds; more get 429 with Retry-After."""
        self._post("faults", {"rate_limit": limit, "rate_window": window})

    def state(self) -> dict[str, Any]:
        return dict(self._get("state"))

    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def credentials_from_env(var: str, default: dict[str, str]) -> dict[str, str]:
    raw = os.environ.get(var)
    return dict(json.loads(raw)) if raw else default
