"""Run the inference service: ``python -m services.inference`` (settings from LATHE_*)."""

from __future__ import annotations

import os
import sys

import uvicorn

from lathe.errors import ConfigError
from lathe.settings import describe_validation_error
from lathe.telemetry import configure_logging


def main() -> None:
    from pydantic import ValidationError

    from services.inference.app import create_app
    from services.inference.settings import InferenceServiceSettings

    try:
        settings = InferenceServiceSettings()
    except ValidationError as exc:
        print(f"lathe inference: {ConfigError(describe_validation_error(exc, 'LATHE_INFERENCE_')).one_line()}")
        sys.exit(2)
    configure_logging("inference", os.environ.get("LATHE_LOG_LEVEL", "INFO"))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
