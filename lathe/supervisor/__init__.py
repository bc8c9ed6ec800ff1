"""The one supervisor of Lathe's child processes: start one, wait until it is healthy, stop it.

``lathe up`` runs its components with it, the inference service its vLLM engines, and the
evaluation stage the inference service it scores through. Sync and async alike::

    process = spawn("mlflow", argv, log_file=logs / "mlflow.log")
    HealthWait("http://127.0.0.1:5000/health", timeout_s=120, process=process).wait()  # or: await ….wait_async()
    process.running()                                                                 # still up?
    process.stop(timeout_s=20)                                                        # or: await ….stop_async()
"""

from lathe.supervisor.health import Health, HealthWait, OnWait, StartErrors
from lathe.supervisor.process import Supervised, pid_alive, spawn, stop_pid

__all__ = ["Health", "HealthWait", "OnWait", "StartErrors", "Supervised", "pid_alive", "spawn", "stop_pid"]
