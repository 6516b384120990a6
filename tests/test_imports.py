"""The spine's import rules ([tool.importlinter] in pyproject.toml), checked on every test run:
stages import only the contract and the table definitions; only echo.lake opens a table;
the contract is pure Python; each room imports only downward."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_rules_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    p = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_import_echo_needs_no_torch_ray_or_deltalake():
    code = (
        "import sys, echo, echo.cli, echo.contract, echo.config;"
        "bad = [m for m in ('torch', 'ray', 'deepspeed', 'torch_geometric', 'mlflow') if m in sys.modules];"
        "assert not bad, bad"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
