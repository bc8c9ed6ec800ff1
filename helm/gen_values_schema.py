"""Generate helm/lathe/values.schema.json from helm/lathe/values.yaml.

    python helm/gen_values_schema.py           # rewrite the schema
    python helm/gen_values_schema.py --check   # exit 1 when it is out of date (the tests run this)

Every object in values.yaml becomes a closed object (``additionalProperties: false``), so a
misspelt key fails `helm install` naming it; every default's type becomes the key's type.
What a default cannot say (free-form label maps, resource blocks, enums, patterns, which
list items are required) is declared in ``RULES`` below, keyed by dotted path where ``*``
matches one key and ``[]`` a list item.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "lathe"

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
STRINGS = {"type": "array", "items": {"type": "string"}}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
DNS_LABEL = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$"}
TAG = {"type": "string", "minLength": 1, "not": {"const": "latest"}}
PULL_POLICY = {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]}
DIGEST = {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$"}
SECRET_NAME = {"type": "string", "pattern": "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"}
CIDRS = {"type": "array", "items": {"type": "string", "pattern": r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"}}
HOSTNAME = {"type": "string", "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
# A registered model's name and an alias, as lathe/registry.py parses them (`name@alias`, `name/version`).
MODEL_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][\w.-]*$"}
ALIAS = {"type": "string", "pattern": r"^[A-Za-z][\w-]*$"}
# networkPolicy.extraIngress / extraEgress: component -> NetworkPolicy rules, appended verbatim.
NETPOL_EXTRA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        component: {"type": "array", "items": {"type": "object"}}
        for component in ("gateway", "inference", "rag", "agent", "ray", "mlflow", "qdrant", "redis", "postgresql")
    },
}

DEFS = {
    "quantity": {"type": ["string", "number"], "pattern": r"^[0-9.]+([eE][0-9]+|[numkMGTPE]i?)?$"},
    "resources": {
        "type": "object",
        "additionalProperties": False,
        "required": ["requests", "limits"],
        "properties": {
            key: {
                "type": "object",
                "required": ["cpu", "memory"],
                "additionalProperties": {"$ref": "#/$defs/quantity"},
            }
            for key in ("requests", "limits")
        },
    },
    "toleration": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "key": {"type": "string"},
            "operator": {"type": "string", "enum": ["Exists", "Equal"]},
            "value": {"type": "string"},
            "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
            "tolerationSeconds": {"type": "integer"},
        },
    },
    "envVar": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "value": {"type": "string"}, "valueFrom": {"type": "object"}},
    },
}

RULES: dict[str, dict[str, Any]] = {
    "commonLabels": STRING_MAP,
    "imagePullSecrets": STRINGS,
    "*.tag": TAG,
    "*.*.tag": TAG,
    "*.pullPolicy": PULL_POLICY,
    "*.*.pullPolicy": PULL_POLICY,
    "*.digest": DIGEST,
    "*.*.digest": DIGEST,
    "*.resources": {"$ref": "#/$defs/resources"},
    "*.*.resources": {"$ref": "#/$defs/resources"},
    "*.*Resources": {"$ref": "#/$defs/resources"},
    "*.*.*Resources": {"$ref": "#/$defs/resources"},
    "*.nodeSelector": STRING_MAP,
    "*.gpuNodeSelector": STRING_MAP,
    "*.*Tolerations": {"type": "array", "items": {"$ref": "#/$defs/toleration"}},
    "*.tolerations": {"type": "array", "items": {"$ref": "#/$defs/toleration"}},
    "*.extraEnv": {"type": "array", "items": {"$ref": "#/$defs/envVar"}},
    "*.serviceAccountAnnotations": STRING_MAP,
    "*.existingSecret": SECRET_NAME,
    "*.*.existingSecret": SECRET_NAME,
    "*.*.*.existingSecret": SECRET_NAME,
    "*.port": PORT,
    "*.metricsPort": PORT,
    "security.seccompProfile": {"type": "string", "enum": ["RuntimeDefault", "Localhost"]},
    "networkPolicy.*NamespaceSelector": STRING_MAP,
    "networkPolicy.*Cidrs": STRINGS,
    "monitoring.selectorLabels": STRING_MAP,
    "monitoring.interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
    "gateway.service.type": {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "gateway.service.annotations": STRING_MAP,
    "gateway.service.loadBalancerSourceRanges": CIDRS,
    "gateway.service.externalTrafficPolicy": {"type": "string", "enum": ["Local", "Cluster"]},
    "gateway.ingress.hosts": {"type": "array", "items": HOSTNAME},
    "gateway.ingress.annotations": STRING_MAP,
    "gateway.ingress.tls": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"secretName": SECRET_NAME, "hosts": {"type": "array", "items": HOSTNAME}},
        },
    },
    "gateway.ingress.controllerNamespaceSelector": STRING_MAP,
    "gateway.httpRoute.annotations": STRING_MAP,
    "gateway.httpRoute.parentRefs": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                **{key: {"type": "string"} for key in ("group", "kind", "name", "namespace", "sectionName")},
                "port": PORT,
            },
        },
    },
    "gateway.httpRoute.hostnames": {"type": "array", "items": HOSTNAME},
    "gateway.httpRoute.requestTimeout": {"type": "string", "pattern": "^(([0-9]{1,5}(h|m|s|ms)){1,4})?$"},
    "gateway.httpRoute.proxyNamespaceSelector": STRING_MAP,
    "gateway.database.egress.cidrs": CIDRS,
    "redis.external.cidrs": CIDRS,
    "networkPolicy.extraIngress": NETPOL_EXTRA,
    "networkPolicy.extraEgress": NETPOL_EXTRA,
    "gateway.redisFailureMode": {"type": "string", "enum": ["closed", "open"]},
    "gateway.auditRetentionDays": {"type": "integer", "minimum": 1, "maximum": 36500},
    # services/gateway/guardrails.py's GuardrailConfig; the gateway checks the rest at start-up.
    "gateway.guardrails": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "enum": ["deny", "injection", "pii"]},
                "action": {"type": "string", "enum": ["block", "mask"]},
                "on": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["request", "response"]}},
                "kinds": STRINGS,
                "terms": STRINGS,
            },
        },
    },
    "tracing.otlpEndpoint": {"type": "string", "pattern": "^(https?://.*)?$"},
    "tracing.sampleRatio": {"type": "number", "minimum": 0, "maximum": 1},
    # services/gateway/spend.py's Price, per model name.
    "gateway.prices": {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt", "completion"],
            "properties": {
                "prompt": {"type": "number", "minimum": 0, "maximum": 1000},
                "completion": {"type": "number", "minimum": 0, "maximum": 1000},
            },
        },
    },
    "ray.pipelines.providerKeys": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["env", "existingSecret"],
            "properties": {
                "env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"},
                "existingSecret": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                "key": {"type": "string", "minLength": 1},
            },
        },
    },
    "inference.models[].id": DNS_LABEL,
    "inference.models[].version": {"type": "string", "pattern": "^([0-9]+)?$"},
    "inference.models[].extraArgs": STRINGS,
    "inference.models[].name": MODEL_NAME,
    # A registered LoRA adapter: alias defaults to the model's, version to "" (resolve the alias at pod start).
    "inference.models[].adapters": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": MODEL_NAME,
                "alias": ALIAS,
                "version": {"type": ["string", "integer"], "pattern": "^([0-9]+)?$", "minimum": 1},
            },
        },
    },
    "inference.models[].lora.maxLoras": {"type": "integer", "minimum": 1},
    # The ranks vLLM serves are checked by the chart (lathe.vllmLoraArgs), which names them.
    "inference.models[].lora.maxLoraRank": {"type": "integer", "minimum": 1, "maximum": 512},
    "inference.models[].lora.maxCpuLoras": {"type": "integer", "minimum": 0},
    # `--set` gives a number, a values file often a string: both name a registered version.
    "inference.models[].canary": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": {"type": ["string", "integer"], "pattern": "^([0-9]+)?$", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1},
        },
    },
    "inference.models[].gpus": {"type": "integer", "minimum": 0},
    "inference.models[].replicas": {"type": "integer", "minimum": 0},
    "inference.models[].gpuMemoryUtilization": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "inference.models[].maxNumSeqs": {"type": "integer", "minimum": 0},
    "inference.models[].maxNumBatchedTokens": {"type": "integer", "minimum": 0},
    "inference.models[].kvCacheDtype": {
        "type": "string",
        "enum": ["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"],
    },
    "inference.models[].speculative.method": {"type": "string", "enum": ["off", "ngram", "draft"]},
    "inference.models[].speculative.tokens": {"type": "integer", "minimum": 1, "maximum": 16},
    "inference.models[].speculative.ngramMax": {"type": "integer", "minimum": 1, "maximum": 32},
    "inference.models[].speculative.ngramMin": {"type": "integer", "minimum": 1, "maximum": 32},
    "rag.encoder": {"type": "string", "enum": ["onnx", "onnx-int8", "torch"]},
    "rag.embedThreads": {"type": "integer", "minimum": 0, "maximum": 256},
    "rag.expand": {"type": "integer", "minimum": 0, "maximum": 4},
    "mlflow.allowedHosts": STRINGS,
    "mlflow.artifacts.type": {"type": "string", "enum": ["pvc", "s3"]},
    "mlflow.artifacts.s3Uri": {"type": "string", "pattern": "^(s3://.+)?$"},
    "qdrant.externalUrl": {"type": "string", "pattern": "^(https?://.+)?$"},
    "ray.authMode": {"type": "string", "enum": ["token", "disabled"]},
    "ray.jobs.recipes[].id": DNS_LABEL,
    "ray.jobs.recipes[].stage": {
        "type": "string",
        "enum": ["curation", "tokenizer", "pretrain", "finetune", "evaluate"],
    },
    "ray.jobs.recipes[].recipe": {"type": "string", "pattern": r"^[\w.-]+\.ya?ml$"},
    "ray.pipelines.storage": {"type": "string", "pattern": "^((s3|gs|gcs|abfs|abfss)://[^/]+.*)?$"},
    "ray.pipelines.s3.endpointUrl": {"type": "string", "pattern": "^(https?://[^/]+.*)?$"},
    "ray.pipelines.s3.region": {"type": "string", "pattern": "^([a-z0-9-]+)?$"},
    "ray.gcsFaultTolerance.redisAddress": {"type": "string", "pattern": "^((rediss?://)?[^:/@\\s]+(:[0-9]+)?)?$"},
    "ray.kueue.queueName": {"type": "string", "pattern": "^([a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?)?$"},
}
# List items must carry these keys; the rest of an item's keys are optional.
REQUIRED_ITEM_KEYS = {
    "inference.models": ["id", "name", "alias", "replicas", "gpus", "maxModelLen", "gpuMemoryUtilization",
                         "modelVolumeSize", "resources"],
    "ray.jobs.recipes": ["id", "stage", "recipe", "enabled"],
}  # fmt: skip


def _rule(path: str) -> dict[str, Any] | None:
    for pattern, schema in RULES.items():
        if fnmatch.fnmatchcase(path, pattern.replace("[]", "[[]]")) and path.count(".") == pattern.count("."):
            return schema
    return None


def schema_for(value: Any, path: str) -> dict[str, Any]:
    rule = _rule(path)
    if rule is not None:
        return rule
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, dict):
        properties = {k: schema_for(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        return {"type": "object", "additionalProperties": False, "properties": properties}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys: dict[str, Any] = {}
        for item in value:
            keys.update({k: v for k, v in item.items() if k not in keys})
        items = schema_for(keys, f"{path}[]")
        items["required"] = REQUIRED_ITEM_KEYS.get(path, [])
        return {"type": "array", "items": items}
    raise ValueError(f"{path}: add a rule for this value ({value!r}) to RULES in {Path(__file__).name}")


def build() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = schema_for(values, "")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Lathe chart values (generated by helm/gen_values_schema.py; do not edit)",
        **schema,
        "$defs": DEFS,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    path = CHART / "values.schema.json"
    text = render()
    if "--check" in argv:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run python helm/gen_values_schema.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
