"""The demo's web server: a ``Readout`` (src/demo/readout.py) behind a small JSON API, and the static page that uses
it, with size limits and security headers. API reference: docs/demo.md."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.demo.readout import ApiError, Readout

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BODY_BYTES = 10_000_000  # a phone photo as JPEG fits; a canvas PNG is ~10 KB
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes: by its Content-Length before reading, and while
    reading, for a body sent without one (chunked)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise ApiError(413, f"the body is {int(declared):,} bytes, more than the {limit:,} allowed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is more than the {limit:,} bytes allowed (stopped reading at {size:,})")
        chunks.append(chunk)
    return b"".join(chunks)


class Guard:
    """Outermost ASGI layer: the security headers on every response (errors and 404s included), and, for a server
    on the loopback interface, only Host headers naming it (a web page elsewhere cannot reach it by DNS rebinding)."""

    def __init__(self, app: Any, allowed_hosts: set[str] | None) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if self.allowed_hosts is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            try:
                name = urlsplit(f"//{host}").hostname
            except ValueError:
                name = None
            if name not in self.allowed_hosts:
                allowed = ", ".join(sorted(self.allowed_hosts))
                message = f"Host {host!r} is not this server's name ({allowed}): refused"
                await JSONResponse({"error": message}, 400)(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def create_app(model: Readout, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, host: str = "127.0.0.1") -> Guard:
    """The ASGI app: the page at ``/``, its files under ``/static/`` (only from the package's static folder), and
    the JSON API under ``/api/`` (docs/demo.md). No interactive docs: FastAPI's load their scripts from a CDN."""
    app = FastAPI(title="LeNet-5 demo", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse({"error": message}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/model")
    async def describe() -> dict[str, Any]:
        return model.describe()

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        body = await read_body(request, max_body_bytes)
        if not body:
            raise ApiError(400, 'the body is empty: send an image (PNG, JPEG, ...) or a JSON {"pixels": 28x28 array}')
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "application/json":
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise ApiError(400, f"the body is not valid JSON ({exc})") from None
            answer = await run_in_threadpool(model.predict_pixels, payload)
        else:  # any other type is read as image bytes: PIL tells the format from the contents, not the header
            answer = await run_in_threadpool(model.predict_image, body)
        return JSONResponse(answer)

    @app.get("/api/random")
    async def random_image() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(model.random_test_image, False))

    @app.get("/api/random/misclassified")
    async def random_misclassified() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(model.random_test_image, True))

    return Guard(app, LOOPBACK_NAMES | {host} if is_loopback(host) else None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
