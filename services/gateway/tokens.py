"""Exact prompt token counts from the served version's own tokenizer, for quota reservations.

A request reserves its prompt's tokens plus ``max_tokens`` against the key's quota. The
gateway counts the prompt as the engine will: the chat messages rendered through the
version's chat template (``add_generation_prompt``, the request's ``tools``), then encoded
without special tokens, as vLLM does for chat; a completion prompt encoded with them, as
vLLM does for completions. The tokenizer comes from the registry version a backend serves
(``tokenizer.json``, ``tokenizer_config.json`` and ``chat_template.jinja``, fetched once per
version and kept under ``LATHE_HOME/gateway/tokenizers``).

The template is rendered here with jinja2's sandbox, set up as transformers sets it up for
``apply_chat_template`` (trim_blocks, lstrip_blocks, loop controls, ``tojson``,
``raise_exception``), and the text encoded with the Rust ``tokenizers`` library: the same
count as transformers gives, without importing transformers (seconds and hundreds of MB)
into every gateway worker.

The gateway counts where the count decides something: a key with a token quota or budget,
or a prompt the byte bound would put over ``max_prompt_tokens``. Every other request keeps
the byte bound, which costs nothing; its reservation is settled with the engine's usage
either way. The count costs about 0.1 ms plus 0.5-0.8 ms per KB of prompt on one of these
cores (``make bench-prompt-tokens``); prompts over 16 KB are encoded off the event loop.

Where no count can be exact — a version the registry does not hold, a backend whose version
is unknown, an outside provider, image parts, template options a request overrides — the
caller falls back to the safe upper bound (one token per UTF-8 byte plus the template's
allowance): never less than the truth, and only admission is delayed by it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
# Request fields that change the rendered prompt in ways this does not follow: count safely.
OVERRIDES = ("chat_template", "chat_template_kwargs", "continue_final_message", "add_generation_prompt",
             "documents", "add_special_tokens", "mm_processor_kwargs")  # fmt: skip
OFF_LOOP_CHARS = 16_384
SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token")


@dataclass
class VersionTokenizer:
    """One version's tokenizer and chat template."""

    tokenizer: Any  # tokenizers.Tokenizer
    template: Any  # a compiled jinja2 template, or None when the version has none
    special: dict[str, str]

    @classmethod
    def load(cls, folder: Path) -> VersionTokenizer:
        from tokenizers import Tokenizer

        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        special = {name: _token_text(config.get(name)) for name in SPECIAL if config.get(name)}
        source = config.get("chat_template")
        if (folder / "chat_template.jinja").is_file():
            source = (folder / "chat_template.jinja").read_text()
        if isinstance(source, list):  # named templates: the default one
            source = next((t["template"] for t in source if t.get("name") == "default"), None)
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), _compile(source) if source else None, special)

    def chat(self, body: dict[str, Any]) -> int | None:
        """The prompt tokens of a chat request, or None when this cannot count it exactly."""
        if self.template is None or any(field in body for field in OVERRIDES):
            return None
        messages = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):
                if any(part.get("type", "text") != "text" for part in content):
                    return None  # images and audio: the engine's processor counts them
                content = "\n".join(str(part.get("text", "")) for part in content)
            messages.append({**message, "content": content})
        try:
            rendered = self.template.render(
                messages=messages, tools=body.get("tools"), add_generation_prompt=True, **self.special
            )
        except Exception:  # a message the template refuses (no content, a role it does not know)
            return None  # the engine decides about it; the byte bound reserves for it meanwhile
        return len(self.tokenizer.encode(rendered, add_special_tokens=False).ids)

    def completion(self, prompts: list[str]) -> int:
        return sum(len(encoding.ids) for encoding in self.tokenizer.encode_batch(prompts, add_special_tokens=True))


def _token_text(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else str(value)


def _compile(source: str) -> Any:
    """The template as transformers compiles it for ``apply_chat_template``."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
    return env.from_string(source)


class PromptCounter:
    """Tokenizers per (model, version), loaded on first use and kept; a failed load is retried
    after ``retry_s``. ``registry`` finds a version's files (a ``ModelRegistry``). Runs on
    one event loop (the gateway worker's)."""

    def __init__(
        self,
        registry: Any,
        cache_dir: Path,
        models_dir: Path | None = None,
        retry_s: float = 300.0,
        wait_s: float = 3.0,
    ) -> None:
        self.registry = registry
        self.cache_dir = Path(cache_dir)
        # Where an inference service on this machine keeps whole versions (LATHE_HOME/models):
        # read there first, with no request to the registry.
        self.models_dir = models_dir
        self.retry_s = retry_s
        self.wait_s = wait_s
        self._loaded: dict[tuple[str, str], VersionTokenizer | None] = {}
        self._failed_at: dict[tuple[str, str], float] = {}
        self._loading: dict[tuple[str, str], asyncio.Task] = {}

    async def count(
        self, model: str, versions: list[str], route: str, body: dict[str, Any], size: int = 0
    ) -> int | None:
        """The prompt's tokens under every version that may serve it (the largest), or None.
        ``size``: the prompt's characters, which decide whether it is encoded off the loop."""
        if route not in ("chat", "completions") or not versions:
            return None
        counts = []
        for version in versions:
            tokenizer = await self._tokenizer(model, version)
            if tokenizer is None:
                return None
            count = tokenizer.chat if route == "chat" else functools.partial(_completion, tokenizer)
            # A long prompt is encoded off the event loop (0.5-0.8 ms per KB on one core).
            counted = await asyncio.to_thread(count, body) if size > OFF_LOOP_CHARS else count(body)
            if counted is None:
                return None
            counts.append(counted)
        return max(counts)

    async def _tokenizer(self, model: str, version: str) -> VersionTokenizer | None:
        """The version's tokenizer, loading it in the background on first use. A request waits
        for that load at most ``wait_s`` (a slow registry never holds traffic longer); until it
        lands, and for ``retry_s`` after it failed, there is none."""
        key = (model, version)
        if key in self._loaded:
            return self._loaded[key]
        if time.monotonic() - self._failed_at.get(key, -1e9) < self.retry_s:
            return None
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.create_task(self._load_in_background(key))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.wait_s)
        except TimeoutError:
            return None

    async def _load_in_background(self, key: tuple[str, str]) -> VersionTokenizer | None:
        model, version = key
        try:
            loaded = await asyncio.to_thread(self._load, model, version)
        except Exception as exc:
            log.warning("no tokenizer for %s version %s (%s); reserving by bytes", model, version, exc)
            self._failed_at[key] = time.monotonic()
            return None
        finally:
            self._loading.pop(key, None)
        self._loaded[key] = loaded
        log.info("counting %s version %s with its own tokenizer", model, version)
        return loaded

    def _load(self, model: str, version: str) -> VersionTokenizer:
        if not version.isdigit():
            raise ValueError(f"version {version!r} is not a registry version")
        from lathe.registry import cached_download

        folder = cached_download(self.models_dir, model, version) if self.models_dir else None
        if folder is None:
            folder = self.registry.download_files(model, version, TOKENIZER_FILES, self.cache_dir)
        return VersionTokenizer.load(folder)


def _completion(tokenizer: VersionTokenizer, body: dict[str, Any]) -> int | None:
    if any(field in body for field in OVERRIDES):
        return None
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        return None
    return tokenizer.completion(prompts)
