"""One chat completion through any OpenAI-compatible server, with Lathe's errors.

The task score, the candidate's and the champion's answers for the pairwise judge, and
the judge's verdicts all ask this way: the official SDK, temperature 0, and a refusal
or an absent server turned into one line that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lathe.errors import EngineUnavailableError, UpstreamError


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None
    # Where the URL came from, for the hint when nothing answers there.
    field: str = "task.endpoint"

    def client(self, timeout_s: float = 120.0) -> Any:
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "none", max_retries=2, timeout=timeout_s)


def ask(
    client: Any, endpoint: Endpoint, messages: list[dict], max_tokens: int, extra_body: dict | None = None
) -> tuple[str, str | None]:
    """The answer's text and the version that gave it (the gateway's ``x-lathe-backend-version``)."""
    import openai

    try:
        raw = client.chat.completions.with_raw_response.create(
            model=endpoint.model, messages=messages, max_tokens=max_tokens, temperature=0, extra_body=extra_body
        )
    except openai.APIConnectionError:
        raise EngineUnavailableError(
            f"nothing answers at {endpoint.base_url}",
            hint=f"start the platform with `lathe up`, or set {endpoint.field}.base_url",
        ) from None
    except openai.AuthenticationError:
        raise UpstreamError(
            f"{endpoint.base_url} refused the API key (401)",
            hint=f"put a key in the variable that {endpoint.field}.api_key_env names",
        ) from None
    except openai.APIStatusError as exc:
        raise UpstreamError(
            f"{endpoint.base_url} answered {exc.status_code} for model {endpoint.model!r}: {exc.message}"
        ) from None
    completion = raw.parse()
    text = (completion.choices[0].message.content or "") if completion.choices else ""
    return text, raw.headers.get("x-lathe-backend-version")
