"""What a CLI command makes of a service's error: the service's own class, message and code."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lathe import errors
from lathe.cli.gateway_client import GatewayClient, GatewayUnreachableError, error_from_wire
from lathe.errors import LatheError
from lathe.http_service import install_error_handlers
from services.agent.llm import ModelCallError
from services.gateway.quotas import BudgetExceededError, QuotaBackendError, RateLimitedError
from services.rag.documents import DocumentError
from services.rag.store import StoreLockedError

CORE = sorted(
    (c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, LatheError)), key=lambda c: c.__name__
)


def service_raising(error: LatheError) -> TestClient:
    """A service app (the services' own error handlers) whose one route raises ``error``."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fail")
    async def fail() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


def over_the_wire(error: LatheError) -> LatheError:
    response = service_raising(error).get("/fail")
    return error_from_wire(response.status_code, response.json())


def test_each_code_names_one_core_class():
    assert len({c.code for c in CORE}) == len(CORE)


@pytest.mark.parametrize("cls", CORE, ids=lambda c: c.__name__)
def test_every_core_error_comes_back_as_itself(cls):
    back = over_the_wire(cls("the thing went wrong", param="field"))
    assert type(back) is cls
    assert (back.message, back.param, back.code) == ("the thing went wrong", "field", cls.code)
    assert (back.status_code, back.exit_code) == (cls.status_code, cls.exit_code)


def test_a_hint_travels_in_the_message():
    sent = errors.ConfigError("LATHE_X is bad", hint="set it to a number")
    back = over_the_wire(sent)
    assert type(back) is errors.ConfigError and back.one_line() == sent.one_line()


@pytest.mark.parametrize(
    "sent",
    [
        RateLimitedError("too many requests", retry_after_s=2.0),
        BudgetExceededError("the key's budget is spent"),
        QuotaBackendError("Redis is down"),
        StoreLockedError("the store is locked"),
        DocumentError("a.pdf: not a PDF", param="files"),
        ModelCallError("the model refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_services_own_error_keeps_its_code_type_and_status(sent):
    back = over_the_wire(sent)
    assert isinstance(back, LatheError)
    assert back.to_openai() == sent.to_openai()
    assert back.status_code == sent.status_code


def test_a_body_that_is_not_an_error_object_becomes_the_message():
    back = error_from_wire(502, b"<html>Bad Gateway</html>")
    assert type(back) is LatheError and back.message == "<html>Bad Gateway</html>" and back.status_code == 502
    assert error_from_wire(500, b"").message == "HTTP 500"


def test_the_openai_sdks_error_body_is_read_too():
    inner = errors.NotFoundError("no model named 'x'").to_openai()["error"]
    assert type(error_from_wire(404, inner)) is errors.NotFoundError


@pytest.fixture
def client(tmp_path, monkeypatch, clean_lathe_env):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))

    def build(error: LatheError, **wording) -> GatewayClient:
        gateway = GatewayClient("http://gateway.test", "lk-test", **wording)
        gateway.http = service_raising(error)  # a TestClient is an httpx.Client
        return gateway

    return build


def test_a_refusal_through_the_client_says_who_answered(client):
    gateway = client(errors.NotFoundError("no key named 'nobody'"), refused="gateway refused ({status}): ")
    with pytest.raises(errors.NotFoundError, match=r"^gateway refused \(404\): no key named 'nobody'$"):
        gateway.call("GET", "/fail")
    with pytest.raises(errors.NotFoundError), gateway.stream("GET", "/fail"):
        pytest.fail("a refused stream yields nothing")


def test_a_gateway_that_does_not_answer_says_to_start_it(tmp_path, monkeypatch, clean_lathe_env):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    gateway = GatewayClient("http://127.0.0.1:9", "lk-test", timeout=5)
    with pytest.raises(GatewayUnreachableError) as caught:
        gateway.call("GET", "/v1/rag/collections")
    assert caught.value.one_line() == "nothing answers at http://127.0.0.1:9 — start the platform with `lathe up`"
