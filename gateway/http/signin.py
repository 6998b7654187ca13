"""Engineer sign-in for downloads (``GATEWAY_DOWNLOAD_AUTH=oidc``): routes and the check.

``GET /auth/login?next=PATH`` sends the browser to the identity provider
(authorization code with PKCE, see :mod:`gateway.oidc`), keeping ``state``,
``nonce``, the PKCE verifier and ``next`` in a sealed cookie that lives ten
minutes and only goes to ``/auth/``. ``GET /auth/callback`` checks them,
exchanges the code, verifies the ID token, applies the allow rule and sets
the session cookie (:mod:`gateway.sessions`): sealed, HttpOnly,
SameSite=Lax, Secure unless the gateway's public URL is on loopback, with an
idle lifetime renewed by each download and an absolute one from sign-in.
``GET``/``POST /auth/logout`` removes it.

A download link then needs the signed link *and* a session (or the staff
bearer token, for ``gateway download --ticket``): a browser without one is
sent to sign in and comes back to the link; other clients get a 401.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway import signing
from gateway.errors import Code, GatewayError
from gateway.http import html
from gateway.http.context import services_of
from gateway.http.staff import is_staff
from gateway.oidc import Pending, Provider, SignInFailed
from gateway.services import Services
from gateway.sessions import PENDING, Engineer, allowed, open_session, seal
from gateway.settings import OidcSettings, is_loopback_url

SESSION_COOKIE = "gateway_engineer"
PENDING_COOKIE = "gateway_signin"
PENDING_TTL = 600
STAFF = Engineer(sub="staff", email="", name="staff token or staff login", signed_in=0)


def _oidc(services: Services) -> tuple[OidcSettings, Provider]:
    oidc, provider = services.settings.oidc, services.oidc
    if oidc is None or provider is None:
        raise GatewayError(Code.NOT_FOUND, "Sign-in is not configured.")
    return oidc, provider


def _secure(services: Services) -> bool:
    """Secure cookies everywhere but on a loopback public URL (plain-http development)."""
    return not is_loopback_url(services.settings.public_url)


def _local_path(target: str) -> str:
    """Only a path on this gateway (never another site: no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def current(request: Request) -> Engineer | None:
    """Who is asking: a signed-in engineer, the staff token, or None."""
    services = services_of(request)
    oidc = services.settings.oidc
    if oidc is None:
        return None
    if services.settings.staff_token and is_staff(request, allow_loopback=False):
        return STAFF
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    return open_session(value, services.settings.secret, services.links.clock(), oidc)


def renew(response: Response, request: Request, engineer: Engineer) -> None:
    """Slide the session's idle lifetime (capped by its absolute one) on use."""
    services = services_of(request)
    oidc = services.settings.oidc
    if oidc is None or engineer is STAFF:
        return
    _set_session(response, services, oidc, engineer)


def _set_session(
    response: Response, services: Services, oidc: OidcSettings, engineer: Engineer
) -> None:
    now = services.links.clock()
    value, exp = seal(engineer, services.settings.secret, now, oidc)
    response.set_cookie(
        SESSION_COOKIE, value, max_age=max(1, exp - int(now)), path="/", httponly=True,
        samesite="lax", secure=_secure(services),
    )  # fmt: skip


def _here(request: Request) -> str:
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(request.url.path)
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def challenge(request: Request) -> Response:
    """No session: a browser is sent to sign in (and back); other clients get a 401."""
    accept = request.headers.get("accept", "")
    if request.method == "GET" and "text/html" in accept:
        return RedirectResponse(f"/auth/login?next={quote(_here(request), safe='')}", 303)
    raise GatewayError(
        Code.UNAUTHORIZED,
        "Sign in first: open this link in a browser, or use the staff token.",
        headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
    )


async def login(request: Request) -> Response:
    services = services_of(request)
    _oidc(services)
    assert services.oidc is not None
    target = _local_path(str(request.query_params.get("next", "/")))
    try:
        url, pending = await services.oidc.start(target)
    except SignInFailed as exc:
        raise GatewayError(Code.SIGNIN_UNAVAILABLE, f"Sign-in is unavailable: {exc}") from None
    sealed = signing.sign(
        {"s": pending.state, "n": pending.nonce, "v": pending.verifier, "t": pending.next,
         "exp": int(services.links.clock()) + PENDING_TTL},
        services.settings.secret, PENDING,
    )  # fmt: skip
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        PENDING_COOKIE, sealed, max_age=PENDING_TTL, path="/auth/", httponly=True,
        samesite="lax", secure=_secure(services),
    )  # fmt: skip
    return response


def _refused(request: Request, status: int, message: str) -> Response:
    """A page for a browser (the usual caller), the JSON error for anything else."""
    services = services_of(request)
    services.event(
        "signin_refused",
        {"reason": message, "from": request.client.host if request.client else None},
    )
    if "text/html" not in request.headers.get("accept", ""):
        code = Code.FORBIDDEN if status == 403 else Code.BAD_REQUEST
        raise GatewayError(code, message)
    response = html.page(request, "signin_refused.html", {"message": message}, status=status)
    response.delete_cookie(PENDING_COOKIE, path="/auth/")
    return response


async def callback(request: Request) -> Response:
    services = services_of(request)
    oidc, provider = _oidc(services)
    now = services.links.clock()
    try:
        claims = signing.verify(
            request.cookies.get(PENDING_COOKIE, ""), services.settings.secret, PENDING, now
        )
        pending = Pending(state=str(claims["s"]), nonce=str(claims["n"]),
                          verifier=str(claims["v"]), next=str(claims["t"]))  # fmt: skip
    except (signing.TokenInvalid, signing.TokenExpired, KeyError):
        return _refused(request, 400, "This sign-in was not started here or took too long.")
    if request.query_params.get("state") != pending.state:
        return _refused(request, 400, "The sign-in answer does not match the request.")
    if "error" in request.query_params:
        return _refused(request, 403, "The identity provider did not sign you in.")
    code = request.query_params.get("code")
    if not code:
        return _refused(request, 400, "The identity provider sent no code.")
    try:
        identity = await provider.finish(code, pending)
    except SignInFailed as exc:
        return _refused(request, 403, str(exc))
    if not allowed(identity, oidc):
        who = identity.get("email") or identity.get("sub")
        return _refused(request, 403, f"{who} is not allowed to download files here.")
    engineer = Engineer(
        sub=str(identity["sub"]),
        email=str(identity.get("email") or ""),
        name=str(identity.get("name") or ""),
        signed_in=int(now),
    )
    services.event(
        "signed_in",
        {"who": engineer.who, "sub": engineer.sub,
         "from": request.client.host if request.client else None},
    )  # fmt: skip
    response = RedirectResponse(_local_path(pending.next), status_code=303)
    response.delete_cookie(PENDING_COOKIE, path="/auth/")
    _set_session(response, services, oidc, engineer)
    return response


async def logout(request: Request) -> Response:
    services = services_of(request)
    engineer = current(request)
    if engineer is not None:
        services.event("signed_out", {"who": engineer.who})
    response = html.page(request, "signed_out.html", {})
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(services)
    )
    return response


routes = [
    Route("/auth/login", login, methods=["GET"]),
    Route("/auth/callback", callback, methods=["GET"]),
    Route("/auth/logout", logout, methods=["GET", "POST"]),
]
