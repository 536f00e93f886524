"""The server's one HTTP error shape, `{"error": {"code", "message"}}`, and request validation
errors in it. FastAPI's own 422 repeats the rejected input (an over-long password on sign-in, a
school's key with a typo) back in its body; here a refusal names where and why, never the value."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
    return error_response(422, "invalid_request", problems)
