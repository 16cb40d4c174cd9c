"""The rating server's HTTP edges: body limit, security headers and error answers.

Plain ASGI middleware (no per-request task or stream, unlike ``BaseHTTPMiddleware``), and the
exception handlers that turn refusals into one-line JSON answers:

* the store's errors: :class:`NotFound` 404, :class:`Conflict` 409, :class:`AppError` 422;
* a request that does not parse or validate: 422 ``{"detail": "<field>: <problem>"}`` naming
  the field, never echoing the input (FastAPI's own handler echoes it, and a NaN or an infinity
  in the body cannot be encoded as JSON: the answer was a 500);
* :class:`~ratingrl.app.gate.Overloaded`: 503 with ``Retry-After``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ratingrl.app.errors import AppError, Conflict, NotFound
from ratingrl.app.gate import Overloaded

__all__ = ["BodyLimit", "SecurityHeaders", "install_error_handlers", "SECURITY_HEADERS"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; media-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, before parsing."""

    def __init__(self, app, limit: int) -> None:  # type: ignore[no-untyped-def]
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = JSONResponse({"detail": f"body over {self.limit} bytes"}, status_code=413)
        if length is not None:
            try:
                if int(length) > self.limit:
                    return await too_big(scope, receive, send)
            except ValueError:
                return await JSONResponse({"detail": "bad Content-Length"}, 400)(
                    scope, receive, send
                )
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_big(scope, receive, send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():  # type: ignore[no-untyped-def]
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class SecurityHeaders:
    """ASGI middleware: the pages' security headers on every answer; API answers not cached."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self._headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in self._headers if k not in present]
                if api:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _refusal(status: int):  # type: ignore[no-untyped-def]
    """An exception handler answering ``status`` with the error's message on one JSON line."""

    async def handler(_request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(err).split())[:500]}, status_code=status)

    return handler


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else "body"


async def _invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and what is wrong, without the input (it may not be JSON)."""
    problems = []
    for error in err.errors()[:5]:
        message = " ".join(str(error.get("msg", "invalid")).split())[:200]
        problems.append(f"{_field(error.get('loc', ()))}: {message}")
    return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)


async def _overloaded(_request: Request, err: Overloaded) -> JSONResponse:
    return JSONResponse(
        {"detail": str(err)}, status_code=503, headers={"Retry-After": str(err.retry_after)}
    )


def install_error_handlers(app: FastAPI) -> None:
    """The store's refusals, invalid requests and overload become one-line JSON answers.

    The most specific class wins (MRO lookup), so NotFound is 404 although it is an AppError.
    """
    app.add_exception_handler(NotFound, _refusal(404))
    app.add_exception_handler(Conflict, _refusal(409))
    app.add_exception_handler(AppError, _refusal(422))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Overloaded, _overloaded)
