"""Typed, validated configuration, parsed once from ``params.yaml``.

Every stage reads its own section through :func:`load_params`. An unknown key, a wrong type or an
out-of-range value raises :class:`ConfigError` naming the dotted key (``prepare.f0.method``)
before any work starts.
"""
from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from pipeline.model.presets import TRAIN_PRESETS
from pipeline.publish import write_text_atomic
from pipeline.vocab import CONDITIONINGS, HELDOUT_METRICS, METHODS

PARAMS_FILE = "params.yaml"
# ddsp's TFRecordProvider frames its 16 kHz companion audio ("audio_16k") with this rate.
DDSP_FEATURE_SAMPLE_RATE = 16000


class ConfigError(ValueError):
    """A params file that does not validate; the message names each offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0)]
MidiPitch = Annotated[int, Field(ge=0, le=127)]


class CorpusParams(_Section):
    """Default corpus rendered offline from a soundfont that an installed package ships."""

    out_dir: str = "data/corpus"
    soundfont: str = Field("pretty_midi", description="'pretty_midi' (TimGM6mb in pretty_midi's wheel) or an .sf2 path")
    program: Annotated[int, Field(ge=0, le=127)] = 0
    n_files: Annotated[int, Field(ge=1)] = 40
    file_secs: Annotated[float, Field(ge=1.0)] = 20.0
    sample_rate: Annotated[int, Field(ge=8000, le=96000)] = 16000
    frame_rate: Annotated[int, Field(ge=10, le=1000)] = 250
    pitch_low: MidiPitch = 40
    pitch_high: MidiPitch = 84
    tempo_bpm_low: Annotated[float, Field(ge=20, le=400)] = 66.0
    tempo_bpm_high: Annotated[float, Field(ge=20, le=400)] = 150.0
    velocity_low: Annotated[int, Field(ge=1, le=127)] = 45
    velocity_high: Annotated[int, Field(ge=1, le=127)] = 120
    rest_prob: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.12

    @model_validator(mode="after")
    def _ranges(self) -> "CorpusParams":
        for low, high in (("pitch_low", "pitch_high"), ("tempo_bpm_low", "tempo_bpm_high"),
                          ("velocity_low", "velocity_high")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")
        return self


class F0Params(_Section):
    method: Literal["swift", "pyin"] = "swift"
    fmin_hz: Annotated[float, Field(gt=0)] = 30.0
    fmax_hz: Annotated[float, Field(gt=0)] = 2000.0

    @model_validator(mode="after")
    def _range(self) -> "F0Params":
        if self.fmin_hz >= self.fmax_hz:
            raise ValueError("fmin_hz must be below fmax_hz")
        return self


DASK_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+$")


class DaskParams(_Section):
    """``prepare.beam.runner: dask``: Beam's DaskRunner on a dask.distributed cluster."""

    # the scheduler, e.g. tcp://scheduler:8786 (dask-kubernetes, dask-jobqueue, `dask scheduler`); null starts a
    # distributed.LocalCluster of ``prepare.beam.num_workers`` worker processes on 127.0.0.1, closed at the end
    address: str | None = None
    # seconds to wait for the scheduler (and, for a LocalCluster, for its workers to start)
    connect_timeout_secs: Annotated[float, Field(gt=0)] = 60.0
    # seconds the whole pipeline may take once submitted; null = no deadline
    run_timeout_secs: Annotated[float, Field(gt=0)] | None = None
    # dask.bag partitions of every stage; null = one per audio file (at most 1024)
    npartitions: Annotated[int, Field(ge=1, le=65536)] | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not DASK_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a dask scheduler address such as tcp://scheduler:8786 "
                             "(null starts a LocalCluster on 127.0.0.1)")
        return value


class BeamParams(_Section):
    """Beam runner. ``local`` is Beam's in-process FnApiRunner (no runner binary to download); ``dask`` is
    Beam's DaskRunner on a dask.distributed cluster (``dask``); any other value is a Beam runner name
    (FlinkRunner, SparkRunner, DataflowRunner, ...) configured through ``options`` (plain Beam command-line
    flags). The same graph runs on every runner and gives byte-identical shards."""

    runner: str = "local"
    # in_memory by default: each multi_processing worker first imports TF + ddsp, which only pays off
    # for hours of audio (bench/prepare_throughput.py has the break-even). multi_threading is not offered: it lost
    # examples between Beam's counters and the written shards in benchmarks.
    mode: Literal["in_memory", "multi_processing"] = "in_memory"
    # local runner: its worker processes (multi_processing); dask: the LocalCluster's worker processes
    num_workers: Annotated[int, Field(ge=1, le=256)] = 1
    options: list[str] = []
    dask: DaskParams = DaskParams()

    @field_validator("runner")
    @classmethod
    def _runner(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the runner must be 'local', 'dask' or a Beam runner name such as FlinkRunner")
        if value.lower() in {"dask", "daskrunner"} and value != "dask":
            raise ValueError(f"{value!r}: write 'dask' for Beam's DaskRunner (it gets the scheduler from "
                             "prepare.beam.dask.address)")
        return value


class PrepareParams(_Section):
    audio_dir: str = "data/corpus"
    out_dir: str = "data/prepared"
    sample_rate: Annotated[int, Field(ge=8000, le=96000)] = 16000
    frame_rate: Annotated[int, Field(ge=10, le=1000)] = 250
    example_secs: PositiveFloat = 4.0
    hop_secs: PositiveFloat = 1.0
    chunk_secs: Annotated[float, Field(ge=10.0)] = 60.0
    eval_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    loudness_n_fft: Annotated[int, Field(ge=64)] = 512
    silence_db: Annotated[float, Field(le=0.0)] = -60.0
    # shorter files are rejected too_short; longer ones give at least one window, zero-padded once
    min_secs: PositiveFloat = 0.5
    # a file whose share of voiced frames is below this is rejected unpitched (DC, noise, clicks)
    min_voiced_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    # a file with at least this share of samples at full scale is used with a "clipped" warning
    clipped_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.001
    num_shards: Annotated[int, Field(ge=1, le=1024)] = 4
    n_plot_examples: Annotated[int, Field(ge=0, le=32)] = 3
    f0: F0Params = F0Params()
    beam: BeamParams = BeamParams()

    @model_validator(mode="after")
    def _frame_grid(self) -> "PrepareParams":
        for rate_name, rate in (("sample_rate", self.sample_rate), ("16 kHz (ddsp's audio_16k)", DDSP_FEATURE_SAMPLE_RATE)):
            if rate % self.frame_rate:
                raise ValueError(f"frame_rate {self.frame_rate} must divide {rate_name} {rate} (integer hop)")
        for name in ("example_secs", "hop_secs"):
            frames = getattr(self, name) * self.frame_rate
            if abs(frames - round(frames)) > 1e-9:
                raise ValueError(f"{name} * frame_rate must be a whole number of frames")
        if self.hop_secs > self.example_secs:
            raise ValueError("hop_secs must not exceed example_secs (windows would skip audio)")
        return self

    @property
    def n_frames(self) -> int:
        return round(self.example_secs * self.frame_rate)

    @property
    def n_samples(self) -> int:
        return round(self.example_secs * self.sample_rate)


# ddsp's MfccTimeDistributedRnnEncoder accepts exactly these z_time_steps and derives an MFCC frame
# (fft_size, overlap), i.e. a hop in samples, from each (ddsp/training/encoders.py). Its STFT pads the
# end, so an example of n samples gives ceil(n / hop) z frames: the keys count frames only for
# 4 s at 16 kHz. Our ``train.z_time_steps`` is the z frame count per example that the model really
# produces; pipeline.model.build maps it back to ddsp's key.
MFCC_ENCODER_HOPS = {63: 1024, 125: 512, 250: 256, 500: 128, 1000: 64}


def encoder_z_time_steps(n_samples: int) -> dict[int, int]:
    """z frames per example reachable with ddsp's MFCC encoder -> the ddsp ``z_time_steps`` key."""
    return {math.ceil(n_samples / hop): key for key, hop in MFCC_ENCODER_HOPS.items()}


PositiveInt = Annotated[int, Field(ge=1)]


class TrainParams(_Section):
    """The autoencoder and its training. Each key left null (or absent) takes the preset's value;
    :meth:`resolved` fills them in, and that resolved copy is what gets built and saved."""

    preset: Literal["cpu", "paper"] = "cpu"
    model_dir: str = "models/autoencoder"
    # not a DVC out (DVC deletes outs before a rerun), so a killed run resumes from here
    checkpoint_dir: str = "models/checkpoints"
    keep_checkpoints: PositiveInt = 3
    n_reconstructions: Annotated[int, Field(ge=0, le=32)] = 3

    # frames/s of the decoder's controls (ddsp's F0LoudnessPreprocessor.time_steps per example); the
    # decoder GRU and the synth's envelope upsampling cost grow with it
    decoder_frame_rate: Annotated[int, Field(ge=10, le=1000)] | None = None
    z_dims: PositiveInt | None = None
    z_time_steps: PositiveInt | None = None
    encoder_rnn_channels: PositiveInt | None = None
    decoder_rnn_channels: PositiveInt | None = None
    decoder_fc_channels: PositiveInt | None = None
    decoder_layers: Annotated[int, Field(ge=0, le=16)] | None = None
    n_harmonics: PositiveInt | None = None
    n_noise_bands: Annotated[int, Field(ge=2)] | None = None
    reverb: bool | None = None
    reverb_length: Annotated[int, Field(ge=2)] | None = None
    fft_sizes: Annotated[list[Annotated[int, Field(ge=8)]], Field(min_length=1)] | None = None
    batch_size: PositiveInt | None = None
    steps: Annotated[int, Field(ge=0)] | None = None
    learning_rate: PositiveFloat | None = None
    lr_decay_steps: PositiveInt | None = None
    lr_decay_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    grad_clip_norm: PositiveFloat | None = None
    checkpoint_every: PositiveInt | None = None
    eval_examples: PositiveInt | None = None
    strategy: Literal["default", "mirrored", "multi_worker"] | None = None
    # multi_worker without TF_CONFIG: the train stage launches this many local worker processes
    workers: Annotated[int, Field(ge=2, le=64)] = 2
    mixed_precision: bool | None = None
    jit_compile: bool | None = None

    @field_validator("fft_sizes")
    @classmethod
    def _powers_of_two(cls, sizes: list[int] | None) -> list[int] | None:
        if sizes and any(size & (size - 1) for size in sizes):
            raise ValueError("every FFT size must be a power of two")
        return sizes

    def resolved(self) -> "TrainParams":
        """A copy with every null key taken from the preset."""
        overrides = self.model_dump(exclude_none=True)
        return TrainParams.model_validate({**TRAIN_PRESETS[self.preset], **overrides})

    def example_errors(self, sample_rate: int, example_secs: float) -> dict[str, str]:
        """Keys whose resolved value does not fit examples of this length -> why (empty if all fit)."""
        t = self.resolved()
        n_samples = round(example_secs * sample_rate)
        errors = {}
        allowed = sorted(encoder_z_time_steps(n_samples))
        if t.z_time_steps not in allowed:
            errors["z_time_steps"] = (
                f"{t.z_time_steps} z frames per example is not reachable: ddsp's MfccTimeDistributedRnnEncoder "
                f"hops by {sorted(MFCC_ENCODER_HOPS.values(), reverse=True)} samples, so a {n_samples}-sample "
                f"example allows z_time_steps in {allowed}")
        decoder_frames = example_secs * t.decoder_frame_rate
        # ddsp's Harmonic synth upsamples controls with overlapping windows: a whole hop per frame
        if sample_rate % t.decoder_frame_rate or abs(decoder_frames - round(decoder_frames)) > 1e-9:
            errors["decoder_frame_rate"] = (
                f"{t.decoder_frame_rate} Hz must divide the sample rate {sample_rate} and give a whole number "
                f"of frames per {example_secs} s example")
        return errors


class ExtractZParams(_Section):
    out_path: str = "data/z/z_frames.parquet"
    batch_size: PositiveInt = 16


class GmmParams(_Section):
    """One Gaussian mixture per cluster count K in ``n_components`` (a DVC matrix stage per K)."""

    n_components: Annotated[list[Annotated[int, Field(ge=1, le=256)]], Field(min_length=1)] = [4, 8, 16]
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    reg_covar: Annotated[float, Field(gt=0)] = 1e-4
    max_iter: Annotated[int, Field(ge=1)] = 300
    n_init: Annotated[int, Field(ge=1)] = 2
    tol: Annotated[float, Field(gt=0)] = 1e-3
    max_train_frames: Annotated[int, Field(ge=0)] = 200_000  # seeded subsample for speed; 0 = every frame
    out_dir: str = "models/gmm"
    metrics_dir: str = "metrics/gmm"

    @field_validator("n_components")
    @classmethod
    def _unique(cls, ks: list[int]) -> list[int]:
        if len(set(ks)) != len(ks):
            raise ValueError(f"cluster counts must be unique, got {ks}")
        return ks


class ChooseKParams(_Section):
    """The choose_k stage: a held-out log-likelihood sweep over K on subsampled frames
    (:func:`pipeline.prior.selection.sweep_k`), stopping once ``patience`` Ks in a row gain less than
    ``min_improvement`` nats per frame. Its K is the recommended one; fit_gmm@K fits the listed Ks."""

    k_min: Annotated[int, Field(ge=1, le=256)] = 2
    k_max: Annotated[int, Field(ge=1, le=256)] = 32
    step: Annotated[int, Field(ge=1, le=64)] = 2
    patience: Annotated[int, Field(ge=1, le=16)] = 2
    min_improvement: Annotated[float, Field(ge=0.0)] = 0.01
    max_frames: Annotated[int, Field(ge=10)] = 10_000  # train and held-out frames each (seeded subsample)
    n_init: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _range(self) -> "ChooseKParams":
        if self.k_min > self.k_max:
            raise ValueError("k_min must not exceed k_max")
        return self


class SampleParams(_Section):
    """Generation per K: which samplers, which conditioning, and when a clip counts as valid."""

    out_dir: str = "samples"
    methods: Annotated[list[Literal[METHODS]], Field(min_length=1)] = list(METHODS)
    temporal_hold: bool = True  # also the hold-per-note variant of temporal sampling
    rho: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None  # None: estimated per cluster from real z
    conditionings: Annotated[list[Literal[CONDITIONINGS]], Field(min_length=1)] = list(CONDITIONINGS)
    n_real: Annotated[int, Field(ge=1, le=64)] = 8  # held-out examples whose contours (and audio) conditioning `real` reuses
    # clips per (method, real example): a cluster method draws each clip's cluster from the weights
    n_draws: Annotated[int, Field(ge=1, le=64)] = 4
    # spectrograms of real-conditioned clips only for the first this many examples (the ones the report shows)
    plot_real_examples: Annotated[int, Field(ge=0, le=64)] = 1
    # train examples (spread over the split) whose audio fits the ddsp 1.x -> 3.x loudness mapping
    report_scale_examples: Annotated[int, Field(ge=2, le=10_000)] = 32
    report_scale_method: Literal["isotonic", "quantile"] = "isotonic"
    # MIDI loudness envelope: `data` (fitted on the train contours) or `default` (fixed constants)
    midi_envelope: Literal["data", "default"] = "data"
    midi_file: str | None = None  # None: a seeded melody in the corpus style that was never rendered
    # compiled decoding runs fastest one clip per call on CPU (bench/generation_speed.py); more on GPUs
    batch_size: Annotated[int, Field(ge=1, le=256)] = 1
    min_hnr_db: float = 3.0
    min_f0_rpa: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5

    @field_validator("methods", "conditionings")
    @classmethod
    def _unique(cls, items: list[str]) -> list[str]:
        if len(set(items)) != len(items):
            raise ValueError(f"entries must be unique, got {items}")
        return items


class AnchorsParams(_Section):
    """The anchors stage: resynthesis and mean-z clips on every conditioning, once (they do not depend on K).
    Conditionings, real examples and thresholds are ``sample``'s, so anchors and samples share contours."""

    out_dir: str = "samples/anchors"


class EvaluateParams(_Section):
    """Aggregation of the per-clip metrics that sample@K wrote; clip validity itself is sample's."""

    # a cluster counts as valid when at least this share of its clips (every per-cluster method
    # and conditioning) is valid; one bad conditioning should not condemn a timbre
    min_valid_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    n_resamples: Annotated[int, Field(ge=10, le=100_000)] = 2000  # bootstrap resamples per 95 % interval
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05  # family-wise error of the paired tests (Holm)
    kad_max_frames: Annotated[int, Field(ge=10)] = 2000  # MFCC frames per set for kad_to_real (subsampled)


class ReportParams(_Section):
    """The static HTML page over every K, method, cluster and clip."""

    title: str = "Generative DDSP: sampled timbres"
    # which K sections start unfolded: the recommended K only, every K, or none
    expand: Literal["recommended", "all", "none"] = "recommended"


class TrackingParams(_Section):
    """MLflow: where runs go and what a stage does when it cannot log. Not a DVC param of any stage:
    changing it reruns nothing."""

    enabled: bool = True
    # None: MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db at the project root (artifacts in mlruns/)
    uri: str | None = None
    experiment: Annotated[str, Field(min_length=1)] = "generative-ddsp"
    # fail: the stage exits with a TrackingError (its DVC outputs are complete); warn: it prints and goes on
    on_error: Literal["fail", "warn"] = "fail"
    registered_model: Annotated[str, Field(min_length=1)] = "generative-ddsp-autoencoder"
    # retries of one request to a tracking server before it counts as unreachable (MLflow's own default,
    # 7 with doubling backoff, keeps a stage waiting minutes for a server that is down)
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    timeout_secs: Annotated[int, Field(ge=1)] = 30  # per request to a tracking server


class FlowsParams(_Section):
    """The Prefect flows (pipeline.flows). Not a DVC param of any stage."""

    stage_retries: Annotated[int, Field(ge=0, le=10)] = 2      # for transient failures only
    retry_delay_secs: Annotated[float, Field(ge=0)] = 30.0
    # the retrain flow promotes a model only when it beats the current one on this held-out metric
    promote_metric: Literal[HELDOUT_METRICS] = "spectral_distance"


class ExportParams(_Section):
    """The real-time export (`gddsp export` / `gddsp stream`)."""

    out_dir: str = "export"
    # one streaming call's length: the whole number of decoder frames nearest this
    block_ms: Annotated[float, Field(gt=0, le=1000)] = 20.0
    # extra TFLite files with quantised weights, each with its audio error against float32 measured
    quantize: list[Literal["float16", "int8"]] = []


class Params(_Section):
    seed: Annotated[int, Field(ge=0)] = 0
    corpus: CorpusParams = CorpusParams()
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()
    extract_z: ExtractZParams = ExtractZParams()
    gmm: GmmParams = GmmParams()
    choose_k: ChooseKParams = ChooseKParams()
    sample: SampleParams = SampleParams()
    anchors: AnchorsParams = AnchorsParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    tracking: TrackingParams = TrackingParams()
    flows: FlowsParams = FlowsParams()
    export: ExportParams = ExportParams()

    @model_validator(mode="after")
    def _model_fits_examples(self) -> "Params":
        errors = self.train.example_errors(self.prepare.sample_rate, self.prepare.example_secs)
        if errors:
            # a ValidationError with a location, so the message names train.<key>, not the whole file
            resolved = self.train.resolved()
            raise ValidationError.from_exception_data("Params", [
                InitErrorDetails(type=PydanticCustomError("value_error", message), loc=("train", key),
                                 input=getattr(resolved, key))
                for key, message in errors.items()])
        return self


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        value = "" if item["type"] == "extra_forbidden" else f" (got {item.get('input')!r})"
        lines.append(f"  {key}: {message}{value}")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = PARAMS_FILE) -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def find_params_file(start: Path | None = None) -> Path:
    """``params.yaml`` in ``start`` (default: the working directory) or its nearest parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PARAMS_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no {PARAMS_FILE} in {here} or any parent folder")


def load_params(path: str | Path | None = None) -> Params:
    params_path = Path(path) if path else find_params_file()
    try:
        raw = yaml.safe_load(params_path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{params_path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{params_path}: top level must be a mapping of sections")
    return parse_params(raw, str(params_path))


def apply_overrides(params_path: str | Path, overrides: dict[str, object]) -> Params:
    """Set dotted keys (``train.preset``) in a params file, comments kept, as ``dvc exp run -S`` does.

    The edited file is validated before it replaces the original, so a bad override names its key
    and leaves the file untouched.
    """
    from ruamel.yaml import YAML

    path = Path(params_path)
    editor = YAML()
    document = editor.load(path.read_text()) or {}
    for key, value in overrides.items():
        node = document
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part} is a value, not a section")
        node[leaf] = value
    buffer = io.StringIO()
    editor.dump(document, buffer)
    params = parse_params(yaml.safe_load(buffer.getvalue()), f"{path} with overrides {overrides}")
    write_text_atomic(path, buffer.getvalue())
    return params


def project_root(params_path: str | Path | None = None) -> Path:
    """The folder holding params.yaml: relative paths in params resolve against it."""
    return (Path(params_path) if params_path else find_params_file()).resolve().parent
