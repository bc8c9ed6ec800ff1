"""The candidate inference service a local rollout runs beside the champion.

It is the same inference service as ``inference`` (vLLM behind the registry-aware
proxy), pinned to one registered version instead of following the alias, on a port
of its own (``LATHE_INFERENCE_CANDIDATE_PORT``, 8101) with engine ports of its own. The
gateway always lists it as a second backend of the default model with no traffic; a
rollout gives it a share once its ``/health`` reports the candidate version.
"""

from __future__ import annotations

from lathe.platform.components import InferenceComponent
from lathe.platform.processes import StateStore
from lathe.settings import LatheSettings


class CandidateComponent(InferenceComponent):
    name = "candidate"
    description = "candidate inference service (one version, for a rollout)"
    port_env = "LATHE_INFERENCE_CANDIDATE_PORT"

    def __init__(self, settings: LatheSettings, store: StateStore, version: str | None = None) -> None:
        super().__init__(settings, store)
        self.version = version

    @property
    def port(self) -> int:
        return self.settings.inference.candidate_port

    def env(self) -> dict[str, str]:
        if self.version is None:
            raise ValueError("the candidate service needs a version to serve")
        inference = self.settings.inference
        return {
            **super().env(),
            "LATHE_INFERENCE_PORT": str(inference.candidate_port),
            "LATHE_INFERENCE_VERSION": self.version,
            "LATHE_INFERENCE_ENGINE_PORT_BASE": str(inference.candidate_engine_port_base),
        }
