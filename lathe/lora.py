"""LoRA adapter folders: which registered base an adapter was trained on, and whether it fits
the model a server serves.

A registered adapter (``lathe.format: lora``) is a PEFT folder whose ``adapter_config.json``
names its base as ``models:/NAME/VERSION`` (the fine-tune stage writes it so). An adapter only
means something on the exact weights it was trained against, so it is served on that version
of its base and refused, in one line, anywhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

from lathe.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"


def read_adapter_config(folder: Path) -> dict:
    file = Path(folder) / ADAPTER_CONFIG
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a LoRA adapter folder (no {ADAPTER_CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file} is not JSON ({exc.msg})") from None


def adapter_base(folder: Path) -> str | None:
    """``NAME/VERSION`` of the registered base the adapter names; None when it names none."""
    named = str(read_adapter_config(folder).get("base_model_name_or_path") or "")
    return named.removeprefix("models:/") if named.startswith("models:/") else None


def adapter_rank(folder: Path) -> int:
    return int(read_adapter_config(folder).get("r", 0))


def check_adapter(adapter: str, folder: Path, served: str, max_rank: int | None = None) -> None:
    """Refuse an adapter that was not trained on ``served`` (``NAME/VERSION``) or whose rank the
    engine was not sized for; the message names the adapter, its base and the served one."""
    base = adapter_base(folder)
    if base != served:
        trained_on = base or "no registered base"
        raise ConfigError(
            f"adapter {adapter}: trained on {trained_on}, but this server serves {served}; "
            "retrain it on the served version, or serve its base",
            param="adapters",
        )
    rank = adapter_rank(folder)
    if max_rank is not None and rank > max_rank:
        raise ConfigError(
            f"adapter {adapter}: rank {rank} is above max_lora_rank ({max_rank}); raise max_lora_rank",
            param="max_lora_rank",
        )


def served_label(model_link: Path) -> str:
    """``NAME/VERSION`` of the folder a served-model link points at (``DEST/NAME/VERSION``)."""
    folder = Path(model_link).resolve()
    return f"{folder.parent.name}/{folder.name}"
