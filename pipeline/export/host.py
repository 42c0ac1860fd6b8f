"""The streaming synthesiser's numpy half, for host programs: noise, its filter, the reverb.

This module imports only numpy (and, in :class:`StreamingVoice`, the LiteRT interpreter), so a
host program copies it next to the exported model and needs nothing else from this project. The
exported TFLite model runs the decoder network and the harmonic synth's oscillators; the parts
LiteRT's built-in ops cannot express stay here (it has no float64, no ``irfft``, and the reverb's
impulse response is seconds long: an FFT convolution):

- :class:`HarmonicPhase`: the fundamental's running phase, in float64 as
  :mod:`pipeline.model.harmonic` computes it offline (in float32 each frame's phase advance
  would be rounded to about 6e-8 of itself, an error that adds up frame after frame and is
  multiplied by the harmonic's number: an estimate, the reason this part is not in the model);
- :func:`resample_frames`: ddsp's linear ``core.resample`` (contours and z to the decoder's
  frames); the offline decode uses it too, so both paths see the same inputs;
- :func:`white_noise`: the noise synth's white noise, drawn from the seed with numpy's PCG64.
  The offline decode (:meth:`pipeline.generation.synthesizer.ModelSynthesizer.decode_long`) draws the
  same numbers with this function, so streamed and offline noise are the same samples;
- :class:`NoiseFilter`: ddsp's ``FilteredNoise`` (``frequency_filter``: zero-phase FIR from the
  band magnitudes by the frequency sampling method, Hann-windowed, one per frame, overlap-added,
  its group delay cropped) one block at a time;
- :class:`Reverb`: ddsp's trainable ``Reverb`` (dry + the IR's convolution, its first tap masked)
  as a uniformly partitioned overlap-save convolution, so each block costs one FFT pair;
- :class:`TemporalZ`: z for a live host, drawn as it plays from one cluster of the exported
  mixture by the temporal sampler (the same distribution as ``pipeline.prior.samplers.sample_temporal``,
  not the same numbers: ``gddsp stream`` draws z as ``generate`` does, to equal it).

Latency: ddsp's harmonic amplitudes and f0 cross-fade from frame j to frame j+1 within frame j,
and the noise filter's zero-phase FIR reaches into frame j+1, so frame j's audio exists only once
frame j+1's controls do: every block of audio comes out one decoder frame (``hop`` samples) late.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MANIFEST_FILE = "manifest.json"


def load_manifest(folder: str | Path) -> dict:
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())


def white_noise(seed: int, n_samples: int, batch: int = 1) -> np.ndarray:
    """[batch, n_samples] uniform in [-1, 1), float32: the noise synth's white noise for ``seed``."""
    return noise_stream(seed).uniform(-1.0, 1.0, (batch, n_samples)).astype(np.float32)


def noise_stream(seed: int) -> np.random.Generator:
    """The generator behind :func:`white_noise`: drawing from it block by block gives the same
    samples as one draw of the whole length (each float64 consumes one 64-bit output)."""
    return np.random.Generator(np.random.PCG64(seed))


def resample_frames(x: np.ndarray, n_out: int) -> np.ndarray:
    """[n, ...] -> [n_out, ...]: ddsp's ``core.resample(x, n_out)`` (linear, ``add_endpoint``), i.e.
    ``tf.compat.v1.image.resize`` bilinear without corner alignment: output i reads input
    i * n / n_out, interpolated, the last frame held."""
    x = np.asarray(x, np.float32)
    n_in = x.shape[0]
    src = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (src - i0).astype(np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    return (x[i0] + (x[i1] - x[i0]) * w).astype(np.float32)


def to_decoder_frames(f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, contour_rate: float,
                      decoder_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contours at ``contour_rate`` ([frames]) and z ([t, d], any rate) -> the decoder's n frames
    ([n], [n], [n, d]), n = round(frames * decoder_rate / contour_rate), as the decoder resamples."""
    n = max(1, int(round(len(f0_hz) * decoder_rate / contour_rate)))
    return resample_frames(f0_hz, n), resample_frames(loudness_db, n), resample_frames(z, n)


class HarmonicPhase:
    """The fundamental's phase at audio rate for frames n-1..n+B-2, given f0 of frames n..n+B-1.

    :func:`pipeline.model.harmonic._harmonic_audio`'s phase, one block at a time: within frame j
    the frequency ramps linearly from f0[j] to f0[j+1], so its running sum is a quadratic there;
    the frames' totals (wrapped to [0, 2pi)) add up in float64 from the start of the signal.
    """

    def __init__(self, hop: int, sample_rate: int):
        self.hop, self.to_radians = hop, 2.0 * np.pi / sample_rate
        self.prev_f0 = None  # float64
        self.before = 0.0  # sum of the wrapped totals of every frame so far
        m = np.arange(hop, dtype=np.float64)
        self.linear, self.quadratic = m + 1.0, m * (m + 1.0) / (2.0 * hop)

    def process(self, f0_hz: np.ndarray) -> np.ndarray:
        """f0_hz [B] (frames n..n+B-1) -> phase [B * hop] float32 (frames n-1..n+B-2; the frame
        before the first is zeros)."""
        f0 = np.asarray(f0_hz, np.float32).astype(np.float64)
        first = self.prev_f0 is None
        seq = f0 if first else np.concatenate([[self.prev_f0], f0])
        self.prev_f0 = f0[-1]
        phase = self.frames(seq[:-1], seq[1:])
        if first:
            phase = np.concatenate([np.zeros(self.hop, np.float32), phase])
        return phase

    def frames(self, f0: np.ndarray, f0_next: np.ndarray) -> np.ndarray:
        omega, omega_next = f0 * self.to_radians, f0_next * self.to_radians
        within = omega[:, None] * self.linear + (omega_next - omega)[:, None] * self.quadratic  # [frames, hop]
        totals = np.mod(within[:, -1], 2.0 * np.pi)
        before = self.before + np.concatenate([[0.0], np.cumsum(totals)])
        self.before = before[-1]
        return np.mod(before[:-1, None] + within, 2.0 * np.pi).astype(np.float32).reshape(-1)


def hann_window(size: int) -> np.ndarray:
    """tf.signal.hann_window(size) (periodic)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)


def noise_impulse_responses(magnitudes: np.ndarray) -> np.ndarray:
    """[frames, n_bands] -> [frames, 2 (n_bands - 1)]: ddsp's ``frequency_impulse_response``
    (window_size 0): irfft, times the fftshifted Hann window, fftshifted to causal form."""
    ir = np.fft.irfft(magnitudes.astype(np.float64), axis=-1)
    size = ir.shape[-1]
    ir = ir * np.fft.fftshift(hann_window(size))
    return np.fft.fftshift(ir, axes=-1)


class NoiseFilter:
    """ddsp's ``frequency_filter(noise, magnitudes, window_size=0)``, one block of frames per call.

    ddsp convolves each frame's ``hop`` samples with that frame's FIR, overlap-adds the results
    and crops ``(ir_size - 1) // 2 - 1`` leading samples (the FIR's group delay). So frame j's
    output begins that many samples before frame j: the output of frame j-1 is complete once
    frame j has been added. :meth:`process` takes frames n..n+B-1 and returns the audio of frames
    n-1..n+B-2.
    """

    def __init__(self, hop: int, n_bands: int):
        self.hop = hop
        self.ir_size = 2 * (n_bands - 1)
        self.delay = (self.ir_size - 1) // 2 - 1
        if not 0 <= self.delay < hop:
            raise ValueError(f"the noise filter's group delay ({self.delay} samples) must be shorter than "
                             f"one decoder frame ({hop} samples) for one frame of latency")
        self.fft_size = int(2 ** np.ceil(np.log2(hop + self.ir_size - 1)))
        # accumulator, indexed from the start of the frame before the block (frame n-1)
        self.pending = np.zeros(self.hop + self.ir_size + hop, np.float64)

    def process(self, white: np.ndarray, magnitudes: np.ndarray) -> np.ndarray:
        """white [B * hop], magnitudes [B, n_bands] (frames n..n+B-1) -> [B * hop] (frames n-1..n+B-2)."""
        n_frames, hop = magnitudes.shape[0], self.hop
        spectra = np.fft.rfft(white.reshape(n_frames, hop).astype(np.float64), self.fft_size, axis=-1)
        spectra *= np.fft.rfft(noise_impulse_responses(magnitudes), self.fft_size, axis=-1)
        frames = np.fft.irfft(spectra, self.fft_size, axis=-1)[:, :hop + self.ir_size - 1]
        # frame j (block index i) starts at (i + 1) * hop - delay, counting from frame n-1's start
        length = (n_frames + 1) * hop + self.ir_size
        acc = np.zeros(length)
        acc[:len(self.pending)] += self.pending[:length]
        for i in range(n_frames):
            start = (i + 1) * hop - self.delay
            acc[start:start + frames.shape[1]] += frames[i]
        out = n_frames * hop
        self.pending = np.zeros(max(len(acc) - out, self.hop + self.ir_size))
        self.pending[:len(acc) - out] = acc[out:]
        return acc[:out]


class Reverb:
    """dry + dry * ir (causal, first tap masked as ddsp's ``Reverb`` does), ``block`` samples per call.

    Uniformly partitioned overlap-save: the IR in ``block``-long partitions, each block's spectrum
    kept for as many blocks as there are partitions; per call one rfft, one irfft and a sum of
    products over the partitions.
    """

    def __init__(self, ir: np.ndarray, block: int):
        ir = np.asarray(ir, np.float64).copy()
        ir[0] = 0.0  # ddsp's Reverb._mask_dry_ir: the dry path is added separately
        self.block = block
        n_parts = int(np.ceil(len(ir) / block))
        parts = np.zeros((n_parts, block))
        parts.flat[:len(ir)] = ir
        self.ir_spectra = np.fft.rfft(parts, 2 * block, axis=-1)  # [parts, block + 1]
        self.history = np.zeros_like(self.ir_spectra)  # input spectra, newest first
        self.previous = np.zeros(block)

    def process(self, dry: np.ndarray) -> np.ndarray:
        """[block] dry audio -> [block] dry + reverberated."""
        dry = np.asarray(dry, np.float64)
        self.history = np.roll(self.history, 1, axis=0)
        self.history[0] = np.fft.rfft(np.concatenate([self.previous, dry]))
        self.previous = dry
        wet = np.fft.irfft(np.einsum("pk,pk->k", self.history, self.ir_spectra), 2 * self.block)[self.block:]
        return dry + wet


class TemporalZ:
    """z per decoder frame from cluster k: x_t = rho x_(t-1) + sqrt(1 - rho^2) e_t, z_t = mu_k + L_k x_t.

    The AR(1) chain runs at the z table's frame rate (the encoder's native frames, where rho was
    estimated) and is resampled linearly to the decoder's frames. z depends on no input, so the
    chain is simply drawn a frame ahead: no latency. Needs an export made with ``--k``.
    """

    def __init__(self, folder: str | Path, cluster: int, rho: float, seed: int):
        folder = Path(folder)
        manifest = load_manifest(folder)
        if not manifest.get("mixture"):
            raise ValueError(f"{folder} holds no mixture: export with --k")
        if not -1.0 < rho < 1.0:
            raise ValueError(f"rho must be in (-1, 1), got {rho}")
        mixture = folder / manifest["mixture"]
        meta = json.loads((mixture / "mixture.json").read_text())
        with np.load(mixture / "mixture.npz", allow_pickle=False) as arrays:
            means, covariances = arrays["means"], arrays["covariances"]
        if not 0 <= cluster < len(means):
            raise ValueError(f"cluster must be in [0, {len(means)}), got {cluster}")
        self.mean = means[cluster]
        self.factor = np.linalg.cholesky(_full_covariance(covariances, meta["covariance_type"], cluster, len(self.mean)))
        self.rho, self.innovation = rho, np.sqrt(1.0 - rho * rho)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        table = manifest["z_table"]
        self.step = table["frames_per_example"] / table["example_secs"] / manifest["frame_rate"]  # z frames per frame
        self.x, self.chain, self.served = None, [], 0

    def next(self, n_frames: int) -> np.ndarray:
        """z [n_frames, d] float32 for the next decoder frames."""
        positions = (self.served + np.arange(n_frames)) * self.step
        while len(self.chain) < int(positions[-1]) + 2:
            e = self.rng.standard_normal(len(self.mean))
            self.x = e if self.x is None else self.rho * self.x + self.innovation * e
            self.chain.append(self.mean + self.factor @ self.x)
        chain = np.asarray(self.chain)
        i0 = np.floor(positions).astype(int)
        w = (positions - i0)[:, None]
        self.served += n_frames
        return (chain[i0] * (1.0 - w) + chain[i0 + 1] * w).astype(np.float32)


def _full_covariance(covariances: np.ndarray, kind: str, k: int, d: int) -> np.ndarray:
    """Component k's [d, d] covariance from sklearn's storage for each ``covariance_type``."""
    if kind == "full":
        return covariances[k]
    if kind == "tied":
        return covariances
    if kind == "diag":
        return np.diag(covariances[k])
    if kind == "spherical":
        return np.eye(d) * covariances[k]
    raise ValueError(f"unknown covariance_type {kind!r}")


class StreamingVoice:
    """The exported model played block by block: LiteRT interpreter + noise filter + reverb.

    ``folder`` is an export folder (``manifest.json``, the ``.tflite`` model, ``reverb_ir.npy``).
    Each :meth:`process` call takes one block of decoder frames (f0 in Hz, loudness in dB, z at the
    decoder's frame rate) and returns that block's audio, one decoder frame late (the first call's
    first frame is silence). :meth:`flush` returns the last frame's audio.
    """

    def __init__(self, folder: str | Path, seed: int, model_file: str | None = None, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter  # the only non-numpy import, here on purpose

        folder = Path(folder)
        self.manifest = load_manifest(folder)
        m = self.manifest
        self.hop, self.block_frames = m["hop_samples"], m["block_frames"]
        self.interpreter = Interpreter(model_path=str(folder / (model_file or m["tflite"])), num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner(m["signature"])
        self.state = {name: np.zeros(shape, np.float32) for name, shape in m["state"].items()}
        self.noise = noise_stream(seed)
        self.phase = HarmonicPhase(self.hop, m["sample_rate"])
        self.noise_filter = NoiseFilter(self.hop, m["n_noise_bands"])
        self.reverb = Reverb(np.load(folder / m["reverb_ir"]), self.block_frames * self.hop) if m["reverb_ir"] else None
        self.started = False
        self.last_inputs = None

    def process(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray,
                white: np.ndarray | None = None, hold: np.ndarray | None = None) -> np.ndarray:
        """f0_hz, loudness_db [block_frames], z [block_frames, z_dims] -> audio [block_frames * hop].

        ``white`` replaces the block's white noise (zeros after the signal's end); ``hold``
        [block_frames] flags the audio frame that ends the signal (see :meth:`flush`)."""
        n = self.block_frames
        if len(f0_hz) != n or len(loudness_db) != n or z.shape != (n, self.manifest["z_dims"]):
            raise ValueError(f"a block is {n} frames of f0, loudness and z [{n}, {self.manifest['z_dims']}]; got "
                             f"{len(f0_hz)}, {len(loudness_db)}, {z.shape}")
        self.last_inputs = (f0_hz[-1:], loudness_db[-1:], z[-1:])
        out = self.runner(f0_hz=np.asarray(f0_hz, np.float32), loudness_db=np.asarray(loudness_db, np.float32),
                          z=np.asarray(z, np.float32), phase=self.phase.process(f0_hz),
                          hold=np.zeros(n, np.float32) if hold is None else np.asarray(hold, np.float32),
                          **self.state)
        self.state = {name: out[name] for name in self.state}
        if white is None:
            white = self.noise.uniform(-1.0, 1.0, n * self.hop).astype(np.float32)
        harmonic = out["harmonic"].astype(np.float64)
        noise = self.noise_filter.process(white, out["noise_magnitudes"])
        if not self.started:  # the frame before the first: nothing yet, as offline
            harmonic[:self.hop] = noise[:self.hop] = 0.0
            self.started = True
        self.parts = (harmonic, noise)  # before the reverb, as the offline decode reports them
        dry = harmonic + noise
        return self.reverb.process(dry) if self.reverb else dry

    def flush(self) -> np.ndarray:
        """The last frame's audio [hop], held as the offline decode ends it: one more call with the last
        inputs repeated and silent noise (the voice is done afterwards)."""
        f0, loudness, z = (np.repeat(x, self.block_frames, axis=0) for x in self.last_inputs)
        hold = np.zeros(self.block_frames, np.float32)
        hold[0] = 1.0
        white = np.zeros(self.block_frames * self.hop, np.float32)
        return self.process(f0, loudness, z, white=white, hold=hold)[:self.hop]


def stream(folder: str | Path, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, seed: int,
           model_file: str | None = None, parts: bool = False):
    """Play whole contours at the decoder's frame rate through :class:`StreamingVoice`.

    f0_hz, loudness_db [frames], z [frames, z_dims] -> audio [frames * hop], aligned with the
    offline decode (the one frame of latency removed); with ``parts`` also the harmonic and noise
    parts before the reverb: (audio, harmonic, noise). The contours are padded to whole blocks
    (and one block more, for the last frame's audio) by repeating their last frame, with silent
    noise and the last frame held, so the end is the offline decode's end too.
    """
    voice = StreamingVoice(folder, seed, model_file)
    n_frames, block = len(f0_hz), voice.block_frames
    pad = -n_frames % block + block
    f0_hz, loudness_db = (np.pad(np.asarray(x, np.float32), (0, pad), mode="edge") for x in (f0_hz, loudness_db))
    z = np.pad(np.asarray(z, np.float32), ((0, pad), (0, 0)), mode="edge")
    chunks = []
    for i in range(0, n_frames + pad, block):
        audible = min(block, max(0, n_frames - i))  # frames of this block before the end: drawn noise
        white = np.zeros(block * voice.hop, np.float32)
        white[:audible * voice.hop] = voice.noise.uniform(-1.0, 1.0, audible * voice.hop)
        hold = (np.arange(i - 1, i - 1 + block) == n_frames - 1).astype(np.float32)  # audio frames n-1..
        out = voice.process(f0_hz[i:i + block], loudness_db[i:i + block], z[i:i + block], white=white, hold=hold)
        chunks.append((out, *voice.parts))
    # the latency: one decoder frame
    audio, harmonic, noise = (np.concatenate(c)[voice.hop:voice.hop + n_frames * voice.hop].astype(np.float32)
                              for c in zip(*chunks))
    return (audio, harmonic, noise) if parts else audio
