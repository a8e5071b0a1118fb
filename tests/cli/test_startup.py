"""`onnxlip --help` and `--version` start fast: the CLI module loads no numeric library."""
from __future__ import annotations

import json
import subprocess
import sys


def test_cli_import_loads_no_heavy_module() -> None:
    code = ("import sys, json, onnxlip.cli.app; "
            "print(json.dumps([m for m in ('onnx', 'onnxruntime', 'scipy', 'matplotlib', 'numpy', 'ml_dtypes') "
            "if m in sys.modules]))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == []


def test_version_runs_without_them() -> None:
    code = ("import sys\nfrom onnxlip.cli.app import main\nsys.argv = ['onnxlip', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('onnx' in sys.modules or 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["onnxlip", "0.1.0", "False"]
