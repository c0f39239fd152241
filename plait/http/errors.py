"""Every error the API returns has one shape: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

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
    "document.invalid": 422,
    "artifact.not_found": 404,
    "artifact.invalid": 422,
    "plan.invalid": 422,
    "plan.no_recipe": 422,
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

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client left, or a guard already answered (413, 408): nobody reads this.
        return JSONResponse(error_body("request.incomplete", "the request body did not arrive"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        default = {404: "route.not_found", 405: "method.not_allowed"}.get(exc.status_code, "request.invalid")
        code = getattr(exc, "code", default)
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
