"""Run the agent service: ``python -m services.agent`` (settings from LATHE_AGENT_*)."""

from lathe.http_service import run_service


def _settings():
    from services.agent.settings import AgentServiceSettings

    return AgentServiceSettings()


def _app(settings):
    from services.agent.app import create_app

    return create_app(settings)


if __name__ == "__main__":
    run_service("agent", _settings, _app, "LATHE_AGENT_")
