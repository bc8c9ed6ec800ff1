"""The policy suite: checkov over what the chart renders and over terraform/.

    make policy                                  # .venv/bin/pytest -q tests/unit/k8s/test_checkov.py
    python3.11 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov==3.3.30   # once

checkov lives in a virtual environment of its own, ``.venv-checkov`` (its pins clash with the
platform's). Without it these tests skip, unless ``CI`` is set: CI must run them.

The chart is rendered once per ci/*-values.yaml (``manifests.write_rendered``) and scanned with
``--framework kubernetes``; terraform/ with ``--framework terraform``, its local modules followed
through the example environment's module calls. Every failed check fails the test, and so does
a skip without a reason. Skips live next to what they skip: a ``checkov.io/skipN:
CKV_K8S_xx=reason`` annotation in a template, a ``#checkov:skip=CKV_AWS_xx:reason`` comment in
Terraform; checks skipped for every object are in .checkov.yaml, each under a comment saying why.
checkov runs offline (``--skip-download``) and without ``--quiet``, which would drop the skipped
checks whose reasons are checked here. KubeRay and prometheus-operator objects are custom
resources: checkov has no checks for them (test_policy.py covers their pods).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.k8s import manifests

CHECKOV = manifests.REPO / ".venv-checkov" / "bin" / "checkov"
CONFIG = manifests.REPO / ".checkov.yaml"
TERRAFORM = manifests.REPO / "terraform"
NO_REASON = {"", "No comment provided"}  # what checkov records for a skip without one


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        install = "python3.11 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov==3.3.30"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the policy suite, and {CHECKOV} is missing: {install}")
        pytest.skip(f"checkov is not installed (it needs its own environment): {install}")
    return CHECKOV


def scan(checkov: Path, framework: str, directory: Path) -> list[dict[str, Any]]:
    """checkov's JSON reports for one framework over one directory (one report per check type)."""
    command = [str(checkov), "--framework", framework, "-d", str(directory), "--config-file", str(CONFIG),
               "--skip-download", "--download-external-modules", "false", "-o", "json", "--compact"]  # fmt: skip
    result = subprocess.run(command, cwd=manifests.REPO, capture_output=True, text=True, timeout=300)
    if result.returncode not in (0, 1):  # 1: some check failed; anything else: checkov itself did
        pytest.fail(f"checkov exited {result.returncode}:\n{result.stderr[-3000:]}")
    try:
        output = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    # One check type gives an object, several a list; nothing scanned gives a bare summary.
    reports = output if isinstance(output, list) else [output]
    scanned = [r for r in reports if "check_type" in r]
    assert sum(r["summary"]["resource_count"] for r in scanned) > 0, f"checkov scanned nothing in {directory}"
    return scanned


def findings(reports: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [check for report in reports for check in report["results"][kind]]


def describe(check: dict[str, Any]) -> str:
    return f"{check['check_id']} {check['resource']} in {check['file_path']} ({check['check_name']})"


def assert_clean(reports: list[dict[str, Any]]) -> None:
    unparsed = [path for report in reports for path in report["results"]["parsing_errors"]]
    assert not unparsed, f"checkov could not parse {unparsed}"
    failed = sorted({describe(check) for check in findings(reports, "failed_checks")})
    assert not failed, f"{len(failed)} failed checks (fix each, or skip it with a reason):\n" + "\n".join(failed)
    unexplained = sorted(
        describe(check)
        for check in findings(reports, "skipped_checks")
        if check["check_result"].get("suppress_comment", "").strip() in NO_REASON
    )
    assert not unexplained, "skips without a reason:\n" + "\n".join(unexplained)


def test_rendered_chart_passes_checkov(checkov, tmp_path):
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk (in the dev extras)")
    written = manifests.write_rendered(tmp_path)
    assert set(written) == {p.name.removesuffix("-values.yaml") for p in manifests.CI_VALUES}
    reports = scan(checkov, "kubernetes", tmp_path)
    assert_clean(reports)
    scanned_sets = {Path(c["file_path"]).parts[1] for c in findings(reports, "passed_checks")}
    assert scanned_sets == set(written), "some values set was not scanned"


def test_terraform_passes_checkov(checkov):
    reports = scan(checkov, "terraform", TERRAFORM)
    assert_clean(reports)
    # The modules are scanned through the example environment's calls: every one with AWS resources
    # (checkov has no checks for the platform module's helm_release resources).
    paths = [Path(check["file_path"]) for check in findings(reports, "passed_checks")]
    scanned = {path.parts[2] for path in paths if path.parts[1] == "modules"}
    with_aws = {p.parent.name for p in TERRAFORM.glob("modules/*/*.tf") if 'resource "aws_' in p.read_text()}
    assert with_aws and with_aws <= scanned, f"modules left unscanned: {with_aws - scanned}"


def test_every_check_skipped_in_the_config_says_why():
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    entries = [(i, line) for i, line in enumerate(lines) if i > start and re.match(r"\s*- ", line)]
    assert entries, "skip-check is empty: drop it rather than keep an empty list"
    for i, line in entries:
        explained = "#" in line or lines[i - 1].lstrip().startswith("#")
        assert explained, f".checkov.yaml: {line.strip()} has no comment above it saying why"
