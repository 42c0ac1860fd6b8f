"""ddsp for users: a script that imports ``pipeline`` (no TensorFlow loaded by that) can import ddsp and
read our shards with ddsp's own TFRecordProvider, as the README shows."""
from __future__ import annotations

import os
import subprocess
import sys

from pipeline.config import BeamParams, F0Params, PrepareParams
from pipeline.prepare.beam import run_prepare
from tests.conftest import REPO_ROOT, harmonic_tone, write_audio

USER_SCRIPT = """
import sys
import pipeline  # noqa: F401  (before ddsp / TensorFlow)
assert "tensorflow" not in sys.modules, "import pipeline loaded TensorFlow"
import ddsp
from ddsp.training import data
provider = data.TFRecordProvider(sys.argv[1] + "/train.tfrecord-*", example_secs=2, sample_rate=16000, frame_rate=250)
batch = next(iter(provider.get_batch(batch_size=2, shuffle=False)))
print("SHAPES", tuple(batch["audio"].shape), tuple(batch["f0_hz"].shape), tuple(batch["loudness_db"].shape))
print("F0", float(batch["f0_hz"].numpy()[0, 100:400].mean()))
print("SYNTH", ddsp.core.oscillator_bank(batch["f0_hz"][:, :, None], batch["f0_hz"][:, :, None] * 0 + 0.1, 250).shape)
"""


def test_a_user_script_imports_ddsp_after_pipeline_and_reads_our_shards(tmp_path):
    audio = tmp_path / "audio"
    for i in range(2):
        write_audio(audio / f"t{i}.wav", harmonic_tone(3.0, 16000, 220.0, seed=i), 16000)
    params = PrepareParams(example_secs=2.0, hop_secs=1.0, chunk_secs=10.0, eval_fraction=0.0, num_shards=1,
                           f0=F0Params(method="swift"), beam=BeamParams())
    run_prepare(params, audio, tmp_path / "prepared", seed=0)
    # a user's plain shell: nothing set for TensorFlow or Keras beforehand
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GDDSP_"))}
    out = subprocess.run([sys.executable, "-c", USER_SCRIPT, str(tmp_path / "prepared")], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("SHAPES", "F0", "SYNTH")))
    assert lines["SHAPES"] == "(2, 32000) (2, 500) (2, 500)"
    assert abs(float(lines["F0"]) - 220.0) < 5.0
    assert "ModuleNotFoundError" not in out.stderr
