"""Admission: what happens to a request before any backend sees it.

``Admitter.admit`` checks that the key may use the model, runs the request's guardrails,
counts the prompt (exactly, with the serving version's tokenizer, where a limit depends
on it), caps ``max_tokens``, prices the request and reserves its tokens and cost against
the key's quotas and budgets, and writes a refusal to the audit log. The Forwarder
(services/gateway/proxy.py) is an Admitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lathe.errors import ContextLengthError, InvalidRequestError, LatheError, PermissionDeniedError
from lathe.telemetry import request_id_var
from services.gateway.audit import AuditEntry
from services.gateway.cache import Lookup
from services.gateway.keys import KeyInfo
from services.gateway.quotas import BudgetExceededError, Limits, RateLimitedError, Reservation
from services.gateway.routing import ModelPool
from services.gateway.screening import Screen
from services.gateway.spend import Price, money_limits
from services.gateway.tables import utcnow

if TYPE_CHECKING:
    from services.gateway.metrics import GatewayMetrics
    from services.gateway.quotas import QuotaLimiter
    from services.gateway.recorder import UsageRecorder
    from services.gateway.routing import Router
    from services.gateway.screening import GuardrailBook
    from services.gateway.settings import GatewayServiceSettings
    from services.gateway.tokens import PromptCounter


@dataclass
class Admission:
    key: KeyInfo
    model: str
    route: str
    prompt_tokens_estimate: int
    max_tokens: int | None
    reservation: Reservation | None
    sticky: str | None = None  # a session or user id: the same version for the same one
    screen: Screen | None = None  # the guardrails on its answer
    audit: AuditEntry | None = None  # its row of the audit log, written when it is settled
    price: Price | None = None  # its model's, when the model has one
    lookup: Lookup | None = None  # what its answer is cached under, for a key with a response cache


def estimate_prompt_tokens(texts: list[str], overhead: int) -> int:
    """An upper bound for byte-level BPE: never more tokens than UTF-8 bytes, plus the
    chat template's own tokens. Over-reserving only delays admission; the real usage
    is what gets charged."""
    return sum(len(t.encode("utf-8")) for t in texts) + overhead * (len(texts) + 1)


class Admitter:
    """The admission half of the Forwarder; it brings these attributes."""

    settings: GatewayServiceSettings
    router: Router
    limiter: QuotaLimiter
    usage: UsageRecorder
    metrics: GatewayMetrics
    guardrails: GuardrailBook
    prices: dict[str, Price]
    counter: PromptCounter | None

    async def admit(
        self,
        key: KeyInfo,
        model: str,
        route: str,
        texts: list[str],
        max_tokens: int | None,
        generates: bool,
        body: dict[str, Any] | None = None,
    ) -> Admission:
        """Check, screen and reserve a request; a refusal is written to the audit log."""
        audit = AuditEntry(key.id, key.name, model, route, request_id_var.get(), team=key.team)
        try:
            pool = self.router.pool(model)  # unknown model: 404 before anything is reserved
            if not key.allows_model(model):
                raise PermissionDeniedError(f"this key may not use model {model!r}", param="model")
            screen = self.guardrails.screen(key, model) if generates and body is not None else None
            if screen is not None:
                audit.guardrails = screen.decisions
                screen.request(body, route)  # masks in place, or refuses
            estimate = await self._prompt_tokens(key, pool, route, texts, generates, body)
            if estimate > self.settings.max_prompt_tokens:
                raise ContextLengthError(
                    f"the prompt is about {estimate} tokens, over the limit of {self.settings.max_prompt_tokens}",
                    param="messages" if route == "chat" else "prompt",
                )
            if generates:
                max_tokens = self._max_tokens(key, max_tokens)
            price = self._price(key, model)
            reservation = await self._reserve(key, estimate, max_tokens or 0, price)
        except LatheError as exc:
            audit.status = exc.status_code
            self.usage.add(key.id, model, 0, 0, exc.status_code, audit, usage=False)
            raise
        return Admission(key, model, route, estimate, max_tokens, reservation, screen=screen, audit=audit, price=price)

    def _price(self, key: KeyInfo, model: str) -> Price | None:
        """The model's price; a key that pays from a money budget may use no model without one."""
        price = self.prices.get(model)
        if price is None and key.pays:
            raise PermissionDeniedError(
                f"model {model!r} has no price (the routes file's price: or LATHE_GATEWAY_PRICES), "
                "so a key with a spend budget may not use it",
                param="model",
            )
        return price

    def _max_tokens(self, key: KeyInfo, asked: int | None) -> int:
        """What a generation may produce: what it asked for, within the key's cap and the gateway's."""
        cap = min(key.max_tokens or self.settings.max_tokens_cap, self.settings.max_tokens_cap)
        if asked is not None and asked > cap:
            raise InvalidRequestError(f"max_tokens {asked} is over this key's cap of {cap}", param="max_tokens")
        return asked or min(self.settings.default_max_tokens, cap)

    async def _reserve(self, key: KeyInfo, prompt: int, completion: int, price: Price | None) -> Reservation | None:
        """The prompt and ``max_tokens`` against the key's rates and token budget, and what they
        cost at the model's price against each money budget the key draws on."""
        money = money_limits(key, utcnow()) if key.pays else ()
        cost = price.cost_micro(prompt, completion) if money and price is not None else 0
        limits = Limits(rpm=key.rpm, tpm=key.tpm, budget=key.budget, money=money)
        try:
            return await self.limiter.reserve(key.id, prompt + completion, limits, cost)
        except (RateLimitedError, BudgetExceededError) as exc:
            reason = "budget" if isinstance(exc, BudgetExceededError) else "rate"
            self.metrics.rate_limited.labels(key=key.name, reason=reason).inc()
            raise

    async def _prompt_tokens(
        self, key: KeyInfo, pool: ModelPool, route: str, texts: list[str], generates: bool, body: dict[str, Any] | None
    ) -> int:
        """The prompt's tokens as the engine will count them where that decides anything (a key
        with token limits or a money budget, a prompt the byte bound puts over the limit); else the byte bound,
        which costs nothing and is never below the truth."""
        bound = estimate_prompt_tokens(texts, self.settings.template_overhead_tokens if generates else 0)
        needed = key.tpm is not None or key.budget is not None or key.pays or bound > self.settings.max_prompt_tokens
        exact = None
        if needed and self.counter is not None and body is not None:
            size = sum(len(t) for t in texts)
            exact = await self.counter.count(pool.model, pool.servable_versions(), route, body, size)
        if needed:
            self.metrics.prompt_counts.labels(model=pool.model, method="bytes" if exact is None else "tokenizer").inc()
        return bound if exact is None else exact
