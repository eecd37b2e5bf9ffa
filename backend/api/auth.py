"""API authentication: ``Authorization: Bearer <key>`` -> the key's Actor.

Use it as a dependency; every route but ``/health`` needs it::

    @router.get("/v1/models")
    def models(actor: Actor = Depends(require_actor)) -> ...

Errors come back as OpenAI-style JSON (``{"error": {"message", "type", "code"}}``) so the
official client shows the message: 401 for a missing, unknown or revoked key; 403 when the key's
user may not do what was asked. ``install_error_handlers(app)`` registers the handlers.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.accounts.actor import Actor, PermissionDenied

log = logging.getLogger(__name__)


class ApiAuthError(Exception):
    """No usable API key: answered with 401."""

    def __init__(self, message: str, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class RateLimited(Exception):
    """A key used up its rate limit: answered with 429 and ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


def error_body(message: str, *, type_: str, code: str,
               param: str | None = None) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


DB_RETRY_AFTER_S = 5  # Retry-After while the database cannot be reached


def database_unavailable_body(exc: BaseException) -> dict[str, dict[str, str | None]]:
    """The 503 body while Postgres is down or restarting (the driver's words go to the log,
    never to the client: they name hosts and ports)."""
    log.warning("database unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return error_body("The studio's database cannot be reached right now (it may be restarting). "
                      f"Try again in {DB_RETRY_AFTER_S} seconds.", type_="server_error",
                      code="database_unavailable")


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    from backend.jobs.outage import is_unreachable

    if not is_unreachable(exc):  # a bad statement: a plain 500, the trace in the log
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content=error_body(
            "The request failed on the server; the API log has the details.",
            type_="server_error", code="internal_error"))
    return JSONResponse(status_code=503, headers={"Retry-After": str(DB_RETRY_AFTER_S)},
                        content=database_unavailable_body(exc))


# Declares the bearer scheme in /openapi.json; the header itself is read by require_actor, so
# a missing or malformed one gets our own 401 message.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                           description="An API key: `studio keys create` or the Admin page.")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise ApiAuthError(
            "No API key. Send 'Authorization: Bearer <key>'; create a key on the Admin page "
            "or with `studio keys create`.", code="missing_api_key")
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiAuthError("The Authorization header must be 'Bearer <key>'.",
                           code="invalid_authorization_header")
    return key.strip()


async def require_actor(
    request: Request,
    _: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
) -> Actor:
    """FastAPI dependency: the actor of the request's API key (401 if none is valid)."""
    from backend.services.accounts import AuthError, actor_for_api_key

    key = _bearer(request.headers.get("authorization"))
    try:
        return await run_in_threadpool(actor_for_api_key, key)
    except AuthError as err:
        raise ApiAuthError(str(err)) from None


async def _auth_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiAuthError)
    return JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"},
                        content=error_body(exc.message, type_="invalid_request_error",
                                           code=exc.code))


async def _permission_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=403, content=error_body(
        str(exc), type_="permission_error", code="permission_denied"))


async def _rate_limited(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return JSONResponse(status_code=429, headers={"Retry-After": str(max(1, round(
        exc.retry_after_s)))}, content=error_body(exc.message, type_="rate_limit_error",
                                                  code="rate_limit_exceeded"))


_ROUTES = "GET /v1/models, GET /v1/models/{name} and POST /v1/chat/completions"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 (no route, wrong method) in the declared error shape, not
    ``{"detail": ...}``."""
    assert isinstance(exc, StarletteHTTPException)
    path, method = request.url.path, request.method
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and path.startswith("/v1/models/"):
        name = path.removeprefix("/v1/models/")
        body = error_body(f"The model {name!r} does not exist in this key's workspace.",
                          type_="invalid_request_error", code="model_not_found")
    elif exc.status_code == 404:
        body = error_body(f"There is no {path!r} here; the API answers {_ROUTES}.",
                          type_="invalid_request_error", code="not_found")
    elif exc.status_code == 405:
        allowed = headers.get("allow") or headers.get("Allow") or ""
        body = error_body(f"{path} does not take {method}; use {allowed or _ROUTES}.",
                          type_="invalid_request_error", code="method_not_allowed")
    else:
        body = error_body(str(exc.detail), type_="invalid_request_error",
                          code=f"http_{exc.status_code}")
    return JSONResponse(status_code=exc.status_code, content=body, headers=headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI itself could not read (a parameter of the wrong type): a 400 naming
    the parameter, like every other bad request, not FastAPI's 422 ``detail`` list."""
    assert isinstance(exc, RequestValidationError)
    first = (exc.errors() or [{}])[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    return JSONResponse(status_code=400, content=error_body(
        f"{param or 'The request'}: {first.get('msg', 'is not valid')}.",
        type_="invalid_request_error", code="invalid_request", param=param))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiAuthError, _auth_error)
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_exception_handler(PermissionDenied, _permission_error)
    from sqlalchemy.exc import DBAPIError

    # OperationalError and InterfaceError (Postgres down, restarting) are DBAPIErrors
    app.add_exception_handler(DBAPIError, _database_unreachable)
