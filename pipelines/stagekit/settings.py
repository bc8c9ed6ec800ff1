"""The environment a pipeline stage reads, in one place.

    settings = load_pipeline_settings()   # raises ConfigError naming the variable

Lathe's own tree (``lathe.settings``) holds the platform's addresses; these are the few
variables a stage reads besides them, under the names they have always had.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lathe.errors import ConfigError


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True, validate_default=True)

    # Set by `lathe train submit`: a stage prints only its LATHE_RESULT line, and the CLI
    # draws the summary from it.
    result_only: bool = Field(default=False, validation_alias=AliasChoices("LATHE_RESULT_ONLY"))
    # Set on a Ray cluster that adds nodes on demand: a job asking for more CPUs than the
    # cluster has now is queued instead of refused.
    ray_autoscaling: bool = Field(default=False, validation_alias=AliasChoices("LATHE_RAY_AUTOSCALING"))
    # MLflow's own variable (a Ray job's runtime env sets it); LATHE_MLFLOW_TRACKING_URI otherwise.
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    # Ray's own variable: the cluster a stage joins when --ray-address is not given.
    ray_address: str | None = Field(default=None, validation_alias=AliasChoices("RAY_ADDRESS"))
    # Where DeepSpeed caches the ops it compiles (the first build takes about a minute).
    torch_extensions_dir: str | None = Field(default=None, validation_alias=AliasChoices("TORCH_EXTENSIONS_DIR"))
    # Lathe's home (the Ray job's runtime env sets it): local copies, logs, fetched inputs.
    home: str = Field(default=".lathe", validation_alias=AliasChoices("LATHE_HOME"))
    # Where pipelines keep stage outputs when the pipeline file names no storage (the chart sets it).
    pipeline_storage: str | None = Field(default=None, validation_alias=AliasChoices("LATHE_PIPELINE_STORAGE"))
    # Set in the RayJob of `lathe pipeline run --k8s`: the storage must be shared (a URI or a mount).
    pipeline_on_cluster: bool = Field(default=False, validation_alias=AliasChoices("LATHE_PIPELINE_ON_CLUSTER"))
    # The most GPUs the cluster can ever have (the chart sets it from its worker groups); None: ask Ray.
    ray_max_gpus: int | None = Field(default=None, ge=0, validation_alias=AliasChoices("LATHE_RAY_MAX_GPUS"))

    def tracking_uri(self) -> str:
        """The MLflow server: ``MLFLOW_TRACKING_URI``, else Lathe's settings."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        from lathe.settings import load_settings

        return load_settings().mlflow.uri


def load_pipeline_settings() -> PipelineSettings:
    try:
        return PipelineSettings()
    except ValidationError as exc:
        from lathe.settings import describe_validation_error

        raise ConfigError(describe_validation_error(exc, prefix="")) from None
