"""An upstream that answers every request with what it received, for relay tests.

    python -m tests.support.echo_stub --port 27510

Stands in for the RAG and agent services behind the gateway's ``/v1/rag/...`` and
``/v1/agents...`` relay: any method, any path, always 200 with a JSON object holding
the method, the raw path and query as they arrived, the body's length and the
``x-lathe-*`` and ``authorization`` headers, so a test can see exactly what the
gateway sent on (``/health`` too, which is all a readiness wait needs).
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_SHOWN_HEADERS = ("authorization", "x-lathe-key-name", "x-lathe-allowed-tools", "content-type")


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "body_bytes": len(body),
            "headers": {name: request.headers[name] for name in _SHOWN_HEADERS if name in request.headers},
        }
    )


def build_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", echo, methods=methods)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
