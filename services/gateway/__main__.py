"""Run the gateway: ``python -m services.gateway`` (settings from LATHE_GATEWAY_*)."""

from lathe.http_service import run_service


def _settings():
    from services.gateway.settings import GatewayServiceSettings

    settings = GatewayServiceSettings()
    settings.load_routes()  # a bad routes file stops the start, naming the field
    return settings


def _app(settings):
    from services.gateway.app import create_app

    return create_app(settings)


if __name__ == "__main__":
    run_service("gateway", _settings, _app, "LATHE_GATEWAY_")
