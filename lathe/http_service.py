"""What every Lathe HTTP service shares: OpenAI-shaped errors and a ``main`` that runs it.

run_service("gateway", GatewayServiceSettings, create_app, "LATHE_GATEWAY_")
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from lathe.errors import ConfigError, LatheError

log = logging.getLogger(__name__)

# Lathe exports its own Prometheus metrics; FastAPI's built-in OpenTelemetry spans,
# metrics and logs would cost every request time and export nothing here.
NO_OTEL = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def openai_error(message: str, error_type: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def install_error_handlers(app: Any, extra_headers: Callable[[LatheError], dict[str, str]] | None = None) -> None:
    """Every error leaves in OpenAI's shape with the right status; never a bare 500 page."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(LatheError)
    async def lathe_error(_: Request, exc: LatheError) -> JSONResponse:
        headers = extra_headers(exc) if extra_headers else {}
        return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        return JSONResponse(openai_error(first["msg"], "invalid_request_error", "invalid_request", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request"
        body = openai_error(str(exc.detail), "invalid_request_error", kind)
        return JSONResponse(body, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(openai_error("internal error", "server_error", "internal_error"), 500)


def run_service(name: str, settings_factory: Callable[[], Any], app_factory: Callable[[Any], Any], prefix: str) -> None:
    """Read settings (a bad one: one line naming it, exit 2), log JSON, serve with uvicorn."""
    import uvicorn
    from pydantic import ValidationError

    from lathe.settings import describe_validation_error
    from lathe.telemetry import configure_logging

    try:
        settings = settings_factory()
    except ValidationError as exc:
        print(f"lathe {name}: {ConfigError(describe_validation_error(exc, prefix)).one_line()}")
        sys.exit(2)
    except (OSError, ValueError) as exc:
        print(f"lathe {name}: {exc}")
        sys.exit(2)
    configure_logging(name, settings.log_level)
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        backlog=4096,
    )
