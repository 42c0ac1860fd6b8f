"""Every output path, computed from params in one place (dvc.yaml's outs are checked against it).

``Paths(params, root)`` answers with absolute paths under the project root; a K-indexed output is a
method (``paths.mixture_dir(8)`` -> ``<root>/models/gmm/k8``). Folder and file names inside a
stage's outputs that other stages read live here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Params
from pipeline.vocab import RECOMMENDED

METRICS_DIR = "metrics"
CLIPS_FILE = "clips.csv"    # the manifest of sample@K: one row per clip
CLIP_DIR = "clips"          # WAV + PNG of every clip
CONDITIONINGS_FILE = "conditionings.json"  # what the conditionings were fitted to (loudness map, MIDI envelope)
CONDITIONAL_DIR = "conditional"  # the joint mixture over (z, f0, loudness) inside fit_gmm@K's folder
RENDERED_AS_FILE = "rendered_as.json"  # the recommended mixture's folder when its K is listed: where it is
REAL_DIR = "real"           # the anchors stage's copy of the real examples' audio (the reference set)
PREPARE_REPORT = "report.json"
RECONSTRUCTIONS = "reconstructions"


def k_name(k: int | str) -> str:
    """The folder/file stem of everything of one mixture: ``k8``; ``recommended`` for choose_k's K."""
    return RECOMMENDED if k == RECOMMENDED else f"k{int(k)}"


@dataclass(frozen=True)
class Paths:
    params: Params
    root: Path

    def _at(self, relative: str) -> Path:
        return self.root / relative

    # corpus
    @property
    def corpus_dir(self) -> Path:
        return self._at(self.params.corpus.out_dir)

    @property
    def corpus_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/corpus.json")

    # prepare
    @property
    def audio_dir(self) -> Path:
        return self._at(self.params.prepare.audio_dir)

    @property
    def prepared_dir(self) -> Path:
        return self._at(self.params.prepare.out_dir)

    @property
    def prepare_plots(self) -> Path:
        return self._at("reports/prepare")

    @property
    def prepare_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/prepare.json")

    # train
    @property
    def model_dir(self) -> Path:
        return self._at(self.params.train.model_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self._at(self.params.train.checkpoint_dir)

    @property
    def worker_logs(self) -> Path:
        """Where local multi-worker training writes the output of workers other than the chief."""
        return self._at("logs/train-workers")

    @property
    def train_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/train.json")

    @property
    def train_loss(self) -> Path:
        return self._at(f"{METRICS_DIR}/train_loss.csv")

    # extract_z
    @property
    def z_table(self) -> Path:
        return self._at(self.params.extract_z.out_path)

    @property
    def extract_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/extract_z.json")

    # fit_gmm@K
    def mixture_dir(self, k: int | str) -> Path:
        return self._at(self.params.gmm.out_dir) / k_name(k)

    def conditional_dir(self, k: int | str) -> Path:
        return self.mixture_dir(k) / CONDITIONAL_DIR

    @property
    def mixture_metrics_dir(self) -> Path:
        return self._at(self.params.gmm.metrics_dir)

    def mixture_metrics(self, k: int | str) -> Path:
        return self.mixture_metrics_dir / f"{k_name(k)}.json"

    # choose_k
    @property
    def choose_k_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/choose_k.json")

    # sample@K
    @property
    def samples_root(self) -> Path:
        return self._at(self.params.sample.out_dir)

    def samples_dir(self, k: int | str) -> Path:
        return self.samples_root / k_name(k)

    def clips_file(self, k: int | str) -> Path:
        return self.samples_dir(k) / CLIPS_FILE

    def sample_metrics(self, k: int | str) -> Path:
        return self._at(f"{METRICS_DIR}/samples/{k_name(k)}.json")

    # anchors
    @property
    def anchors_dir(self) -> Path:
        return self._at(self.params.anchors.out_dir)

    @property
    def anchors_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/anchors.json")

    # evaluate
    @property
    def evaluate_metrics(self) -> Path:
        return self._at(f"{METRICS_DIR}/evaluate.json")

    @property
    def evaluate_plots(self) -> Path:
        return self._at(f"{METRICS_DIR}/evaluate")

    @property
    def evaluate_report(self) -> Path:
        return self._at("reports/evaluate")

    # report
    @property
    def report_page(self) -> Path:
        return self._at("reports/index.html")
