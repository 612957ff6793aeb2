"""Every error of the API is `{"error": {"code": "...", "message": "..."}}` with a 4xx
status (503 when the database is unreachable, 500 with code internal_error for a bug: never
a traceback). Routes raise `ApiError(status, code, message)`, or let a `DomainError` of the
domain services through (its status and code are used as they are).

Every route documents the errors it may answer with: `responses=errors(401, 404)`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ..domain.accounts import RateLimited
from ..domain.errors import DomainError
from ..errors import StoreError

__all__ = ["ApiError", "ErrorBody", "error_response", "errors", "install_error_handlers"]

log = logging.getLogger(__name__)

_DESCRIPTIONS = {
    400: "Malformed request (e.g. not JSON)",
    401: "No valid credentials",
    403: "Not allowed (role, token scope, CSRF or origin)",
    404: "No such resource",
    409: "Conflicts with the current state",
    413: "The body is too large (or its Markdown too big for a page)",
    415: "The body's media type is not accepted",
    422: "Invalid input",
    429: "Too many attempts; see Retry-After",
}
_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that may answer with these error statuses."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def domain_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        return error_response(exc.status, exc.code, exc.message, headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = exc.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return error_response(400, "invalid_json", "the body is not valid JSON")
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "request"
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    async def store_error(_request: Request, exc: Exception) -> Response:
        log.warning("API: the database failed: %s", exc)
        return error_response(503, "unavailable", "the database is unavailable; try again")

    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.error("API: unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(Exception, unexpected)
