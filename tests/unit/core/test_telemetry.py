import json
import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lathe.telemetry import JsonFormatter, RequestIdMiddleware, redact, request_id_var


def test_redact_masks_keys_and_bearer_tokens():
    line = "auth Bearer abcdefghijklmnop key=lk-0123456789abcdefghij api_key: 's3cr3tvalue'"
    masked = redact(line)
    assert "abcdefghijklmnop" not in masked
    assert "lk-0123456789abcdefghij" not in masked
    assert "s3cr3tvalue" not in masked


def test_json_formatter_carries_component_request_id_and_fields():
    formatter = JsonFormatter("inference")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.fields = {"version": "2"}
    token = request_id_var.set("req-1")
    try:
        entry = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert entry["msg"] == "hello world"
    assert entry["component"] == "inference"
    assert entry["request_id"] == "req-1"
    assert entry["version"] == "2"


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)

    @app.get("/echo")
    def echo() -> dict:
        return {"seen": request_id_var.get()}

    return app


def test_request_id_is_echoed_when_given():
    client = TestClient(_app())
    response = client.get("/echo", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["seen"] == "abc-123"


def test_request_id_is_made_when_missing_or_unsafe():
    client = TestClient(_app())
    made = client.get("/echo").headers["x-request-id"]
    assert len(made) == 32
    unsafe = client.get("/echo", headers={"x-request-id": "bad id\twith spaces"}).headers["x-request-id"]
    assert unsafe != "bad id\twith spaces"
