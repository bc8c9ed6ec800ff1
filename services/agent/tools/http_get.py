"""``http_get``: fetch a page from a host on ``LATHE_AGENT_HTTP_ALLOWLIST`` (empty: none).

The caller's key is never sent, redirects are not followed (a redirect to another
host would bypass the allowlist), and at most ``http_max_bytes`` are read.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from services.agent.tools.base import BaseTool, ToolContext, ToolError


def host_allowed(host: str, allowlist: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowlist:
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


class HttpGet(BaseTool):
    name = "http_get"
    description = "Fetch a web page by URL (only from allowed hosts) and get its text."

    class Input(BaseModel):
        model_config = {"extra": "forbid"}

        url: str = Field(description="An http:// or https:// URL.", min_length=8, max_length=2000)

    async def run(self, args: Input, ctx: ToolContext) -> str:
        parts = urlsplit(args.url.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ToolError("only http:// and https:// URLs with a host are allowed")
        if parts.username or parts.password:
            raise ToolError("URLs with credentials are not allowed")
        allowlist = self.settings.http_allowlist
        if not host_allowed(parts.hostname, allowlist):
            allowed = ", ".join(allowlist) if allowlist else "none are configured"
            raise ToolError(f"host {parts.hostname} is not allowed (allowed hosts: {allowed})")
        limit = self.settings.http_max_bytes
        try:
            async with ctx.http.stream(
                "GET", args.url.strip(), follow_redirects=False, headers={"accept": "text/*, application/json"}
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        break
        except httpx.HTTPError as exc:
            raise ToolError(f"fetch failed: {type(exc).__name__}") from None
        if response.is_redirect:
            where = response.headers.get("location", "?")
            raise ToolError(f"{response.status_code} redirect to {where} (not followed)")
        text = bytes(body[:limit]).decode(response.encoding or "utf-8", errors="replace")
        kind = response.headers.get("content-type", "unknown")
        cut = " (truncated)" if len(body) > limit else ""
        return f"HTTP {response.status_code} {kind}{cut}\n{text}"
