"""``lathe chat "…"``: one chat completion from the served model, streamed to the terminal."""

from __future__ import annotations

import time

import typer

from lathe.cli.gateway_client import START_HINT, GatewayUnreachableError, error_from_wire, gateway_access
from lathe.cli.output import console, print_json, settings


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)


def chat(
    message: str = typer.Argument(..., help="What to ask the model."),
    system: str | None = typer.Option(None, "--system", help="A system prompt."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, max=4096, help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0, help="Sampling temperature."),
    url: str | None = typer.Option(None, "--url", help="OpenAI-compatible base URL (default: the local gateway)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="LATHE_API_KEY", help="Gateway key (default: the CLI's own, from `lathe up`)."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the answer, model, version, usage and time to first token as JSON."
    ),
) -> None:
    """Ask the served model one question through the gateway (OpenAI API) and stream the answer.

    Both modes stream: the terminal shows the tokens as they come, and ``--json`` prints what the stream
    carried (the answer, its usage and the time to the first token) once it ends.
    """
    import httpx
    import openai

    from lathe.errors import InvalidRequestError, UpstreamError

    if not message.strip():
        raise InvalidRequestError("the message is empty", param="message")
    s = settings()
    base, key = gateway_access(url, api_key)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key or "none", max_retries=0, timeout=120)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    model, version = s.inference.model_name, _served_version(s.inference.base_url)
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        if json_output:
            print_json({"model": model, "version": version, **_collect(stream)})
            return
        console.print(f"[bold cyan]{f'{model} v{version}' if version else model}[/]: ", end="")
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                console.print(chunk.choices[0].delta.content, end="", highlight=False, markup=False)
        console.print()
    except openai.APIConnectionError:
        raise GatewayUnreachableError(f"nothing answers at {base}", hint=START_HINT) from None
    except openai.APIStatusError as exc:
        body = exc.body if exc.body is not None else str(exc)
        raise error_from_wire(exc.status_code, body, prefix=f"{base} answered {exc.status_code}: ") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{base} failed: {type(exc).__name__}") from None


def _collect(stream) -> dict:
    """The answer, finish reason, usage and time to the first token of one streamed completion."""
    started, first = time.monotonic(), None
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices or []:
            if choice.delta.content:
                first = first if first is not None else time.monotonic() - started
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    return {
        "answer": "".join(pieces),
        "finish_reason": finish,
        "usage": usage,
        "ttft_s": round(first, 3) if first is not None else None,
    }


def _served_version(base: str) -> str | None:
    import httpx

    try:
        return httpx.get(f"{base}/health", timeout=3).json().get("version")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
