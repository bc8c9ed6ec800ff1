"""One exception hierarchy for the platform.

Code raises these; each edge maps them once to its wire shape: the CLI prints
``message`` on one line and exits with ``exit_code``, a service answers with
``status_code`` and OpenAI's error object (``type`` and ``code`` below).
"""

from __future__ import annotations


class LatheError(Exception):
    """Base of every error Lathe raises on purpose."""

    status_code = 500
    error_type = "server_error"
    code = "internal_error"
    exit_code = 1

    def __init__(self, message: str, *, param: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{message} — {hint}" if hint else message)
        self.message = message
        self.param = param
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def to_openai(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.one_line(), "type": self.error_type, "param": self.param, "code": self.code}}


class ConfigError(LatheError):
    """A setting, flag or recipe value is invalid; the message names it."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_config"
    exit_code = 2


class InvalidRequestError(LatheError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationError(LatheError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(LatheError):
    status_code = 403
    error_type = "permission_denied"
    code = "permission_denied"


class PayloadTooLargeError(LatheError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class ContextLengthError(InvalidRequestError):
    code = "context_length_exceeded"


class NotFoundError(LatheError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class AliasNotFoundError(NotFoundError):
    code = "alias_not_found"


class ConflictError(LatheError):
    """The request clashes with the current state (a second active rollout, say)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class RegistryUnavailableError(LatheError):
    """The MLflow server cannot be reached."""

    status_code = 503
    error_type = "service_unavailable"
    code = "registry_unavailable"


class EngineUnavailableError(LatheError):
    """No healthy inference engine can take the request."""

    status_code = 503
    error_type = "service_unavailable"
    code = "engine_unavailable"


class UpstreamError(LatheError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"


class PlatformError(LatheError):
    """A local component could not start, stop or be reached."""

    code = "platform_error"


class PortInUseError(PlatformError):
    code = "port_in_use"


class MissingDependencyError(PlatformError):
    code = "missing_dependency"
