"""Render helm/lathe once per ci/*-values.yaml into a folder of YAML files, for checkov.

    .venv/bin/python deploy/policy/render_chart.py OUT_DIR
    .venv-checkov/bin/checkov --framework kubernetes -d OUT_DIR --skip-download

Each values set gets its own folder (``OUT_DIR/<values set>/<template>.yaml``), so a finding
names the values set and the template it came from. The rendering is Helm's own engine, through
``tests/unit/k8s/manifests.py``. ``make policy`` renders and scans through
``tests/unit/k8s/test_checkov.py``, which also scans terraform/; this script is for looking at
what checkov sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the renderer lives with the chart tests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render helm/lathe once per ci/*-values.yaml into a folder.")
    parser.add_argument("out_dir", type=Path, help="folder to write <values set>/<template>.yaml under")
    args = parser.parse_args(argv)

    from tests.unit.k8s import manifests

    for name, files in manifests.write_rendered(args.out_dir).items():
        print(f"{name}: {len(files)} files in {args.out_dir / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
