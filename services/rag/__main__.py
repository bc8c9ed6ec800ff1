"""Run the RAG service: ``python -m services.rag`` (settings from LATHE_RAG_*)."""

from lathe.http_service import run_service


def _settings():
    from services.rag.settings import RagServiceSettings

    return RagServiceSettings()


def _app(settings):
    from services.rag.app import create_app

    return create_app(settings)


if __name__ == "__main__":
    run_service("rag", _settings, _app, "LATHE_RAG_")
