"""What the conditionings learn from the training data, measured once per run on the prepared train split.

- the ddsp 1.x -> 3.x loudness mapping (:mod:`pipeline.audio.report_scale`), fitted on the audio of
  ``n_audio`` train examples spread evenly over the split (a few dozen 4 s windows hold ~10^4 frames,
  plenty for a monotone map of one variable, and the 1.x loudness costs one 2048-point STFT each):
  it turns the seed report's constant loudness into the 3.x dB of conditioning ``seed_report_scale``;
- the MIDI loudness envelope (:func:`pipeline.generation.midi_envelope.envelope_from_contours`) over the
  contours of every train example (contours only: no audio work), so a MIDI clip's loudness stays
  where the model was trained.

Both are plain numbers (JSON); :func:`fit_conditioning_data` returns them with a summary that the
sample and anchors stages write beside their clips, so a reader sees what the report's constant became.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio.report_scale import (
    LoudnessMapping,
    corpus_loudness_pairs,
    fit_loudness_mapping,
    report_db_v1,
    report_loudness_db_v3,
)
from pipeline.dataset.reader import iter_examples
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.generation.midi_envelope import EnvelopeFit, contours_from_examples, envelope_from_contours


@dataclass(frozen=True)
class ConditioningData:
    """The fitted loudness mapping (or None when not asked for) and the MIDI envelope fit (or None)."""

    mapping: LoudnessMapping | None
    envelope: EnvelopeFit | None

    def summary(self) -> dict:
        out: dict = {}
        if self.mapping is not None:
            out["seed_report_scale"] = {
                "report_loudness_db_v1": report_db_v1(), "loudness_db_v3": report_loudness_db_v3(self.mapping),
                "method": self.mapping.method, "n_frames": self.mapping.n_frames,
                "knots_v1_db": self.mapping.v1_db, "knots_v3_db": self.mapping.v3_db}
        if self.envelope is not None:
            out["midi_envelope"] = self.envelope.as_dict()
        return out


def spread_indices(n_total: int, n_wanted: int) -> np.ndarray:
    """``n_wanted`` indices spread evenly over ``range(n_total)`` (all of them when fewer), sorted."""
    if n_total <= 0 or n_wanted <= 0:
        return np.zeros(0, int)
    if n_wanted >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n_wanted).round().astype(int))


def fit_conditioning_data(prepared_dir: str | Path, spec: DatasetSpec, *, loudness_n_fft: int, n_audio: int,
                          mapping_method: str = "isotonic", want_mapping: bool = True,
                          want_envelope: bool = True) -> ConditioningData:
    """One pass over the train split: contours of every example, audio of ``n_audio`` of them."""
    if not (want_mapping or want_envelope):
        return ConditioningData(None, None)
    examples = [{key: e[key] for key in ("f0_hz", "f0_confidence", "loudness_db", "audio")}
                for e in iter_examples(prepared_dir, "train")]
    if not examples:
        raise ValueError(f"{prepared_dir}: the train split has no examples to fit the conditionings on")
    mapping = None
    if want_mapping:
        chosen = spread_indices(len(examples), n_audio)
        v1, v3 = corpus_loudness_pairs((examples[i]["audio"] for i in chosen), spec.sample_rate, spec.frame_rate,
                                       loudness_n_fft=loudness_n_fft)
        mapping = fit_loudness_mapping(v1, v3, method=mapping_method)
    envelope = envelope_from_contours(contours_from_examples(examples), spec.frame_rate) if want_envelope else None
    return ConditioningData(mapping, envelope)
