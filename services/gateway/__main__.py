"""Run the gateway: ``python -m services.gateway`` (settings from LATHE_GATEWAY_*)."""

from __future__ import annotations

import os
import sys

import uvicorn

from lathe.errors import ConfigError
from lathe.settings import describe_validation_error
from lathe.telemetry import configure_logging


def main() -> None:
    from pydantic import ValidationError

    from services.gateway.app import create_app
    from services.gateway.settings import GatewayServiceSettings

    try:
        settings = GatewayServiceSettings()
        settings.load_routes()
    except ValidationError as exc:
        print(f"lathe gateway: {ConfigError(describe_validation_error(exc, 'LATHE_GATEWAY_')).one_line()}")
        sys.exit(2)
    except OSError as exc:
        print(f"lathe gateway: cannot read LATHE_GATEWAY_ROUTES_FILE: {exc}")
        sys.exit(2)
    configure_logging("gateway", os.environ.get("LATHE_LOG_LEVEL", "INFO"))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
