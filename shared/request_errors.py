"""FastAPI's 422 answer without echoing the input back.

FastAPI's default handler returns each validation error with the ``input`` that failed. That repeats a
caller's personal data into responses (and any proxy log of them), and an input holding a lone UTF-16
surrogate (``"\\ud800"`` in JSON) cannot be encoded as UTF-8, so the error answer itself fails with a 500.
This handler answers the documented ``HTTPValidationError`` shape with location, message and type only.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


async def validation_error_without_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_without_input)
