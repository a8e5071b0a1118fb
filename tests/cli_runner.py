"""Running the CLI in-process for tests: exit code, stdout, stderr; JSON output; shipped models."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from onnxlip.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BAD = ROOT / "tests" / "data"
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> dict:
    code, stdout, stderr = run(*args, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def model(name: str) -> tuple[str, str]:
    return str(MODELS / f"{name}.onnx"), str(MODELS / f"{name}_x0.npy")
