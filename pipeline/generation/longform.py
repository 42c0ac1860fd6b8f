"""What the generate and stream commands play: a conditioning of any length and its z draw.

A conditioning comes from a MIDI file (its top voice), a constant pitch, or a user's own recording
(f0 and loudness by the prepare stage's analysis). Its z is one continuous draw at the z table's
frame rate (the encoder's native frames) for the whole length, so timbre (and, for ``temporal``,
its slow drift) runs on unbroken; the decoder resamples it to its own frames.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

from pipeline.audio.features import VOICED_THRESHOLD, compute_loudness_db, estimate_f0
from pipeline.audio.io import inspect_audio, read_segment
from pipeline.config import Params, PrepareParams
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.generation.conditioning import Conditioning, melody_contour, read_midi_notes
from pipeline.generation.fits import fit_conditioning_data
from pipeline.generation.midi_envelope import DEFAULT_ENVELOPE, EnvelopeParams
from pipeline.generation.plans import ClipPlan, draw_conditional_z, draw_z
from pipeline.paths import CONDITIONINGS_FILE, Paths
from pipeline.prior.selection import k_argument
from pipeline.vocab import CONDITIONAL

RELEASE_SECS = 0.5  # after a MIDI file's last note: the sound's release


def midi_conditioning(path: Path, spec: DatasetSpec, envelope: EnvelopeParams | None = None) -> Conditioning:
    """A MIDI file's top voice as contours (:func:`melody_contour` with ``envelope``), plus the release."""
    notes = read_midi_notes(path)
    n_frames = int(np.ceil((max(n.end_s for n in notes) + RELEASE_SECS) * spec.frame_rate))
    return melody_contour(notes, n_frames, spec.frame_rate, name=path.stem, envelope=envelope)


def midi_envelope_for(params: Params, paths: Paths) -> EnvelopeParams:
    """How ``generate`` and ``export`` turn MIDI notes into contours, as the sample stage does.

    ``sample.midi_envelope: data``: the envelope and tuning fitted on the train split, read from the
    anchors stage's conditionings.json (what the evaluated MIDI clips were made with), or fitted now
    from the prepared data when that file is not there; ``default``: the fixed constants at A4 = 440 Hz.
    """
    if params.sample.midi_envelope != "data":
        return DEFAULT_ENVELOPE
    fitted = paths.anchors_dir / CONDITIONINGS_FILE
    if fitted.is_file():
        envelope = json.loads(fitted.read_text()).get("midi_envelope")
        if envelope:
            return EnvelopeParams(**envelope["params"])
    spec = DatasetSpec.load(paths.prepared_dir)
    return fit_conditioning_data(paths.prepared_dir, spec, loudness_n_fft=params.prepare.loudness_n_fft, n_audio=0,
                                 want_mapping=False).envelope.params


def constant_conditioning(f0_hz: float, loudness_db: float, secs: float, spec: DatasetSpec) -> Conditioning:
    n_frames = int(round(secs * spec.frame_rate))
    return Conditioning("constant", np.full(n_frames, f0_hz, np.float32), np.full(n_frames, loudness_db, np.float32),
                        np.ones(n_frames, bool))


def audio_conditioning(path: Path, spec: DatasetSpec, prepare: PrepareParams) -> Conditioning:
    """f0 and loudness of a recording, computed as the prepare stage computes them for the corpus.

    The file is checked as prepare checks its inputs (readable, finite, not silent); any length
    of at least one decoder frame is accepted. Frames the f0 estimator finds unvoiced keep its
    filled-in pitch, as in the training data.
    """
    info = inspect_audio(path, min_secs=1.0 / spec.frame_rate, silence_db=prepare.silence_db)
    audio = read_segment(info, 0.0, info.frames / info.sample_rate, spec.sample_rate)
    n_frames = int(np.ceil(len(audio) * spec.frame_rate / spec.sample_rate))
    f0_hz, confidence = estimate_f0(audio, spec.sample_rate, spec.frame_rate, n_frames, prepare.f0.method,
                                    prepare.f0.fmin_hz, prepare.f0.fmax_hz)
    loudness = compute_loudness_db(audio, spec.sample_rate, spec.frame_rate, n_frames, prepare.loudness_n_fft)
    return Conditioning(path.stem, f0_hz.astype(np.float32), loudness.astype(np.float32),
                        np.asarray(confidence) >= VOICED_THRESHOLD)


def long_form_z(plan: ClipPlan, gmm: GaussianMixture, cond: Conditioning, spec: DatasetSpec, z_per_example: int,
                seed: int, rho: float, conditional=None) -> np.ndarray:
    """z [t, d] for the whole conditioning at the z table's rate (``z_per_example`` frames per example).

    The ``conditional`` method draws from ``conditional`` (the joint mixture of
    :mod:`pipeline.prior.conditional`), each frame given the melody's own f0 and loudness."""
    n_z = max(1, int(round(cond.n_frames / spec.n_frames * z_per_example)))
    if plan.method == CONDITIONAL:
        if conditional is None:
            raise ValueError("method conditional needs the joint mixture (fit_gmm@K's conditional folder)")
        z, _ = draw_conditional_z(plan, conditional, n_z, cond, seed, rho=rho)
    else:
        z, _ = draw_z(plan, gmm, n_z, cond, seed, rho=rho)
    return z.astype(np.float32)


def add_melody_arguments(parser: argparse.ArgumentParser, methods: tuple[str, ...]) -> None:
    """The flags ``gddsp generate`` and ``gddsp stream`` share: which timbre, and which pitch and loudness."""
    parser.add_argument("--k", type=k_argument, required=True,
                        help="which fitted mixture: a K in gmm.n_components, or 'recommended' (choose_k's K)")
    parser.add_argument("--cluster", type=int, default=None,
                        help="cluster to draw every frame from (required unless --method direct)")
    parser.add_argument("--method", choices=methods, default="temporal",
                        help="direct: each frame its own component; inverse_transform: i.i.d. frames from one "
                             "cluster; temporal: AR(1)-smooth frames from one cluster; temporal_hold: one draw per note"
                             + ("; conditional: AR(1)-smooth frames from one cluster of the joint mixture, each "
                                "given the melody's pitch and loudness" if CONDITIONAL in methods else ""))
    parser.add_argument("--rho", type=float, default=0.9,
                        help="frame-to-frame correlation for --method temporal (and conditional)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--midi", type=Path, help="a MIDI file; its top voice is the melody")
    source.add_argument("--f0-hz", type=float, help="a constant pitch in Hz (with --loudness-db and --secs)")
    source.add_argument("--audio", type=Path, help="a recording: its pitch and loudness (prepare's analysis)")
    parser.add_argument("--loudness-db", type=float, default=-30.0, help="constant loudness with --f0-hz")
    parser.add_argument("--secs", type=float, default=None, help="length with --f0-hz (default: one example)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
