"""Typed dependencies so route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from services.inference.alias_server import AliasServer
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceServiceSettings


def _settings(request: Request) -> InferenceServiceSettings:
    return request.app.state.settings


def _server(request: Request) -> AliasServer:
    return request.app.state.server


def _metrics(request: Request) -> InferenceMetrics:
    return request.app.state.metrics


def _http(request: Request) -> httpx.AsyncClient:
    return request.app.state.http


SettingsDep = Annotated[InferenceServiceSettings, Depends(_settings)]
ServerDep = Annotated[AliasServer, Depends(_server)]
MetricsDep = Annotated[InferenceMetrics, Depends(_metrics)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]
