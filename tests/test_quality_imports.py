"""The generative-quality library modules load without TensorFlow or the orchestration stack."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT

MODULES = ("pipeline.prior.conditional", "pipeline.metrics.distances", "pipeline.evaluation.stats", "pipeline.prior.selection",
           "pipeline.generation.midi_envelope", "pipeline.audio.report_scale")
HEAVY = ("tensorflow", "ddsp", "mlflow", "prefect", "dvc")


def test_modules_import_without_tensorflow():
    code = (f"import json, sys\nfor name in {MODULES!r}:\n    __import__(name)\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
