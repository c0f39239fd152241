"""Every error the API returns has one shape: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.errors import PlaitError

STATUS_BY_CODE = {
    "input.invalid": 422,
    "workflow.invalid": 422,
    "workflow.not_found": 404,
    "run.not_found": 404,
    "run.state": 409,
    "workflow.duplicate": 409,
    "store.unavailable": 503,
    "lease.lost": 409,
    "run.idempotency_conflict": 409,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class ApiError(Exception):
    """An HTTP error with a plait error code (auth, limits, bad requests)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers)

    @app.exception_handler(PlaitError)
    async def plait_error(request: Request, exc: PlaitError) -> JSONResponse:
        details = exc.to_dict().get("details")
        return JSONResponse(error_body(exc.code, exc.message, details), status_code=STATUS_BY_CODE.get(exc.code, 400))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body("request.malformed", "the body is not valid JSON", errors), status_code=400)
        return JSONResponse(
            error_body("input.invalid", "the request does not match the API's schema", errors), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "route.not_found", 405: "method.not_allowed"}.get(exc.status_code, "request.invalid")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, whether or not they declare their length."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = JSONResponse(
            error_body("request.too_large", f"the body is over the {self.limit}-byte limit"), status_code=413
        )
        await body({"type": "http"}, _empty_receive, send)


class _TooLarge(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
