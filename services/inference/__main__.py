"""Run the inference service: ``python -m services.inference`` (settings from LATHE_*)."""

from lathe.http_service import run_service


def _settings():
    from services.inference.settings import InferenceServiceSettings

    return InferenceServiceSettings()


def _app(settings):
    from services.inference.app import create_app

    return create_app(settings)


if __name__ == "__main__":
    run_service("inference", _settings, _app, "LATHE_INFERENCE_")
