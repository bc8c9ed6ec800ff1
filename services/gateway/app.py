"""The gateway's FastAPI app: ``create_app(settings)``; no work at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from fastapi import FastAPI
from prometheus_client import start_http_server

from lathe import tracing
from lathe.http_service import install_error_handlers
from lathe.registry import ModelRegistry
from lathe.telemetry import RequestIdMiddleware
from services.gateway import audit, spend
from services.gateway.cache import LruStore, RedisStore, ResponseCache
from services.gateway.discovery import EndpointDiscovery, kubernetes_slice_api
from services.gateway.keys import KeyCache, KeyStore
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import BREAKER_VALUE, Forwarder
from services.gateway.quotas import InProcessLimiter, RateLimitedError, retry_after_header
from services.gateway.recorder import UsageRecorder
from services.gateway.redis_quotas import RedisLimiter
from services.gateway.rollouts.cache import RolloutCache
from services.gateway.rollouts.controller import RolloutController
from services.gateway.rollouts.store import RolloutStore
from services.gateway.routes import admin, health, openai, relay, rollouts
from services.gateway.routing import Router
from services.gateway.screening import GuardrailBook
from services.gateway.settings import GatewayServiceSettings
from services.gateway.tables import utcnow
from services.gateway.tokens import PromptCounter

log = logging.getLogger(__name__)


def _rollout_controller(
    settings: GatewayServiceSettings, keys: KeyStore, router: Router, metrics: GatewayMetrics
) -> RolloutController:
    return RolloutController(
        RolloutStore(keys.engine),
        router,
        metrics,
        ModelRegistry(settings.mlflow.uri, timeout_s=settings.mlflow.request_timeout_s),
        interval_s=settings.rollout_interval_s,
        lease_ttl_s=settings.rollout_lease_s,
        feedback_window_s=settings.feedback_window_s,
        cache=RolloutCache(settings.redis_url) if settings.redis_url else None,
        reconcile_s=settings.rollout_reconcile_s,
    )


def _prompt_counter(settings: GatewayServiceSettings, registry: ModelRegistry) -> PromptCounter | None:
    """Exact prompt counts for token-limited keys (LATHE_GATEWAY_EXACT_PROMPT_COUNT)."""
    if not settings.exact_prompt_count:
        return None
    return PromptCounter(registry, settings.home / "gateway" / "tokenizers", models_dir=settings.home / "models")


def _routes(settings: GatewayServiceSettings, metrics: GatewayMetrics) -> tuple[Router, GuardrailBook, dict]:
    """The routes file's backends (each model's series at zero), guardrails and prices."""
    routes = settings.load_routes()
    router = Router.from_config(routes, settings.breaker_failures, settings.breaker_reset_s)
    for model in router.pools:  # at zero, so a model's first stream is an increase a rate can see
        metrics.ttft.labels(model=model)
        metrics.rollout_step.labels(model=model).set(0)  # "none running" reads 0, not no data
    by_model = {model: route.guardrails for model, route in routes.models.items()}
    prices = {**settings.prices, **{model: r.price for model, r in routes.models.items() if r.price is not None}}
    return router, GuardrailBook(settings.guardrails, by_model, metrics), prices


def _limiter(settings: GatewayServiceSettings, keys: KeyStore, usage: UsageRecorder) -> InProcessLimiter | RedisLimiter:
    """Quotas and budgets, in process or on Redis; what was spent before comes from the usage rows."""

    async def spent(key_id: str) -> int:
        await usage.flush()
        return await asyncio.to_thread(keys.tokens_used, key_id)

    async def money_spent(limit: spend.MoneyLimit) -> int:
        await usage.flush()
        return await asyncio.to_thread(spend.spent_micro, keys, limit)

    if settings.redis_url:
        return RedisLimiter(settings.redis_url, spent, settings.redis_failure_mode, money_spent=money_spent)
    return InProcessLimiter(spent, money_spent=money_spent)


def create_app(settings: GatewayServiceSettings, *, serve_metrics: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.home.mkdir(parents=True, exist_ok=True)
        if settings.database.startswith("sqlite:///"):
            (settings.home / "gateway").mkdir(parents=True, exist_ok=True)
        keys = KeyStore(settings.database)
        metrics = GatewayMetrics.create()
        router, guardrails, prices = _routes(settings, metrics)

        usage = UsageRecorder(keys, prune=lambda: audit.prune(keys, settings.audit_retention_days))
        limiter = _limiter(settings, keys, usage)
        http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.request_timeout_s, connect=settings.connect_timeout_s),
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0),
        )
        app.state.settings = settings
        app.state.keys = keys
        app.state.key_cache = KeyCache(keys)
        app.state.admin_key = settings.load_admin_key()
        app.state.router = router
        app.state.metrics = metrics
        app.state.usage = usage
        app.state.forwarder = Forwarder(settings, router, limiter, usage, metrics, http, guardrails, prices)
        exact_store = RedisStore(settings.redis_url) if settings.redis_url else LruStore(settings.cache_max_entries)
        app.state.forwarder.cache = ResponseCache(settings, http, metrics, exact_store)
        controller = _rollout_controller(settings, keys, router, metrics)
        app.state.rollouts = app.state.forwarder.rollouts = controller
        app.state.forwarder.counter = _prompt_counter(settings, controller.registry)
        usage.start()
        tasks = [
            asyncio.create_task(check_backends(router, http, metrics, settings.health_interval_s)),
            asyncio.create_task(controller.run()),
            asyncio.create_task(export_spend(keys, metrics, settings.spend_refresh_s)),
        ]
        targets = settings.service_targets()
        if targets:
            discovery = EndpointDiscovery(
                router,
                targets,
                kubernetes_slice_api(),
                interval_s=settings.discovery_interval_s,
                breaker_failures=settings.breaker_failures,
                breaker_reset_s=settings.breaker_reset_s,
            )
            await asyncio.to_thread(discovery.refresh)
            tasks.append(asyncio.create_task(discovery.run()))
        metrics_server = None
        if serve_metrics:
            metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):  # a database that is gone loses one second of figures
                await controller.stop()
            await usage.stop()
            await http.close()
            if isinstance(limiter, RedisLimiter):
                await limiter.close()
            if isinstance(exact_store, RedisStore):
                await exact_store.close()
            if metrics_server is not None:
                metrics_server.shutdown()
            keys.engine.dispose()

    described = {} if settings.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    telemetry = tracing.install("gateway", settings.tracing)
    app = FastAPI(title="Lathe gateway", version="0.1.0", lifespan=lifespan, telemetry=telemetry, **described)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(rollouts.router)
    app.include_router(relay.router)
    install_error_handlers(app, lambda exc: retry_after_header(exc) if isinstance(exc, RateLimitedError) else {})
    return app


def learn_version(backend, health: object, router: Router | None = None) -> None:
    """Label the backend with the version its /health says it serves (a hot swap changes it),
    and route the LoRA adapters it lists to its model."""
    version = health.get("version") if isinstance(health, dict) else None
    if version is not None and str(version) != backend.version:
        log.info("backend version", extra={"fields": {"backend": backend.url, "version": str(version)}})
        backend.version = str(version)
    adapters = health.get("adapters") if isinstance(health, dict) else None
    if router is not None and isinstance(adapters, list):
        names = [a["name"] for a in adapters if isinstance(a, dict) and isinstance(a.get("name"), str)]
        backend.adapters = frozenset(names)
        router.add_adapters(backend.model, names)


async def export_spend(keys: KeyStore, metrics: GatewayMetrics, interval_s: float) -> None:
    """Each money budget and its spend so far, from the database (every replica's spend is
    there): the gauges the 80 % and 100 % budget alerts read."""
    while True:
        try:
            figures = await asyncio.to_thread(spend.budget_figures, keys, utcnow())
        except Exception:
            log.exception("could not read the spend of the money budgets; trying again in %.0f s", interval_s)
        else:
            for scope, owner, period, spent, budget in figures:
                metrics.spend_period.labels(scope=scope, owner=owner, period=period).set(spent)
                metrics.budget.labels(scope=scope, owner=owner, period=period).set(budget)
        await asyncio.sleep(interval_s)


async def check_backends(
    router: Router, http: aiohttp.ClientSession, metrics: GatewayMetrics, interval_s: float
) -> None:
    """Active health checks: a backend that fails ``/health`` takes no new traffic."""
    while True:
        backends = [b for b in router.all_backends() if b.provider == "local"]  # a provider has no /health

        async def probe(backend) -> None:
            try:
                async with http.get(backend.url + "/health", timeout=aiohttp.ClientTimeout(total=2.0)) as response:
                    healthy = response.status == 200
                    if healthy and backend.learns_version:
                        learn_version(backend, await response.json(content_type=None), router)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                healthy = False
            if healthy != backend.healthy:
                log.warning("backend health changed", extra={"fields": {"backend": backend.url, "healthy": healthy}})
            backend.healthy = healthy
            metrics.backend_healthy.labels(backend=backend.url).set(1 if healthy else 0)
            # A breaker half-opens with time, not with a request: keep its gauge current.
            metrics.breaker_state.labels(backend=backend.url).set(BREAKER_VALUE[backend.breaker.state])

        await asyncio.gather(*(probe(b) for b in backends))
        await asyncio.sleep(interval_s)
