"""Pre- and post-processing of the official inference pipelines, reproduced as plain functions.

They exist so that mossep can be checked against the conformance kits end to end, and so that a user
can ask for output that matches an official tool. mossep's own separation path lives elsewhere.

- ModelScope MossFormer and MossFormer2 (8 kHz): one forward pass; every speaker peak-normalised to 0.5 and
  truncated to int16 (`modelscope_pcm16`).
- MossFormer2 standalone `inference()` (Hugging Face models): one forward pass; every speaker divided by its own
  peak (`standalone_inference`), written as float.
- ClearerVoice MossFormer2 separation, two variants sharing the windowing (`padded_length`,
  `windowed_separate`):
  - training-side decode (`train_decode`): joint peak normalisation over both speakers;
  - ClearVoice package (`audio_norm` + `clearvoice_decode`): per-speaker RMS matched to the input.

Arrays: mixture [T]; separated [C, T]. `model` maps a float32 tensor [1, T] to [1, C, T].
`for_checkpoint` picks the one that belongs to a checkpoint format (mossep's `--raw`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Separate = Callable[[torch.Tensor], torch.Tensor]
Pipeline = Callable[[Separate, np.ndarray], np.ndarray]  # (model, mixture [T]) -> separated [C, T]

TARGET_LEVEL_DB = -25.0


# ---------------------------------------------------------------- ModelScope MossFormer


def one_pass(model: Separate, mixture: np.ndarray) -> np.ndarray:
    """The network's output for the whole mixture in one forward pass, as the official pipelines run it:
    [T] -> float32 [C, T]."""
    x = torch.from_numpy(np.asarray(mixture, dtype=np.float32).reshape(1, -1))
    with torch.no_grad():
        return np.asarray(model(x)[0].cpu().numpy(), dtype=np.float32)


def _row_peaks(y: np.ndarray) -> np.ndarray:
    """Each row's peak, as a divisor; a silent row keeps its zeros (the official code would divide by zero)."""
    peak = np.abs(y).max(axis=-1, keepdims=True)
    return np.where(peak > 0, peak, np.float32(1))


def modelscope_pcm16(separated: np.ndarray) -> np.ndarray:
    """[C, T] float -> int16 [C, T]: each row scaled to peak 0.5, times 32768, truncated toward zero."""
    y = np.asarray(separated, dtype=np.float32)
    return (y / _row_peaks(y) * 0.5 * 32768).astype(np.int16)


def modelscope_pipeline(model: Separate, mixture: np.ndarray) -> np.ndarray:
    """The ModelScope separation pipeline (MossFormer and MossFormer2): its int16 output, as float (q / 32768,
    which a 16-bit file stores exactly). [T] -> float32 [C, T]."""
    return modelscope_pcm16(one_pass(model, mixture)).astype(np.float32) / np.float32(32768)


# ---------------------------------------------------------------- MossFormer2 standalone (Hugging Face)


def standalone_inference(model: Separate, mixture: np.ndarray) -> np.ndarray:
    """Mossformer2Wrapper.inference(): one pass, each speaker divided by its own peak (float32). [T] -> [C, T]."""
    y = one_pass(model, mixture)
    return y / _row_peaks(y)


# ---------------------------------------------------------------- ClearerVoice MossFormer2


def padded_length(length: int, window: int, stride: int) -> int:
    """Length after the official end padding (applied even when decoding in one pass).

    Shorter than a window: pad to W. Shorter than W + S: pad to W + S. Otherwise, when (T - W) is not a
    multiple of S, the official code appends T - floor((T - W) / S) * S zeros (often nearly doubling T).
    """
    if length < window:
        return window
    if length < window + stride:
        return window + stride
    if (length - window) % stride:
        return length + length - (length - window) // stride * stride
    return length


def windowed_separate(model: Separate, padded: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Separate in windows of W at hop S and stitch without cross-fade: the first window keeps
    [0, W - G), every later one [G, W - G) of itself, G = (W - S) // 2. Samples after the last
    window's W - G stay zero. padded: [T] -> [C, T] float64."""
    give_up = (window - stride) // 2
    total = padded.shape[-1]
    x = torch.from_numpy(np.asarray(padded, dtype=np.float32))
    out: np.ndarray | None = None
    start = 0
    while start + window <= total:
        with torch.no_grad():
            seg = model(x[start:start + window].unsqueeze(0))[0].cpu().numpy()  # [C, W]
        if out is None:
            out = np.zeros((seg.shape[0], total))
        lo = 0 if start == 0 else give_up
        out[:, start + lo:start + window - give_up] = seg[:, lo:window - give_up]
        start += stride
    assert out is not None, "padded input is shorter than one window"
    return out


def _decode(model: Separate, mixture: np.ndarray, sample_rate: int, decode_window: float,
            segment_above: int) -> np.ndarray:
    """Shared part: pad, then one pass (T <= segment_above) or windowed. Returns [C, T_padded]."""
    mixture = np.asarray(mixture, dtype=np.float64).reshape(-1)
    window = int(sample_rate * decode_window)
    stride = int(window * 0.75)
    padded = np.zeros(padded_length(len(mixture), window, stride))
    padded[: len(mixture)] = mixture
    if len(mixture) > segment_above:
        return windowed_separate(model, padded, window, stride)
    with torch.no_grad():
        return model(torch.from_numpy(padded.astype(np.float32)).unsqueeze(0))[0].cpu().numpy()


def train_decode(model: Separate, mixture: np.ndarray, sample_rate: int = 8000, decode_window: float = 1,
                 one_time_decode_length: float = 60) -> np.ndarray:
    """ClearerVoice training-side decode: both speakers divided by their joint peak, cut to T. [T] -> [C, T].

    Segmented when T > W * one_time_decode_length (W = sample_rate * decode_window).
    """
    T = np.asarray(mixture).size
    out = _decode(model, mixture, sample_rate, decode_window,
                  int(sample_rate * decode_window * one_time_decode_length))
    return (out / np.abs(out).max())[:, :T].astype(np.float32)


def audio_norm(x: np.ndarray) -> tuple[np.ndarray, float]:
    """ClearVoice input levelling (float64), in two stages, each to RMS 10^(-25/20):
    1. the whole signal (RMS + 1e-6 in the divisor);
    2. only the samples whose power exceeds the mean power.
    Returns (normalised signal, 1 / (overall gain + 1e-6)), the scalar that would undo it."""
    target = 10 ** (TARGET_LEVEL_DB / 20)
    x = np.asarray(x, dtype=np.float64)
    gain1 = target / (np.sqrt(np.mean(x**2)) + 1e-6)
    x = x * gain1
    power = x**2
    loud_rms = np.sqrt(np.mean(power[power > power.mean()]))
    gain2 = target / (loud_rms + 1e-6)
    return x * gain2, 1.0 / (gain1 * gain2 + 1e-6)


def clearvoice_decode(model: Separate, mixture: np.ndarray, sample_rate: int, decode_window: float = 1,
                      one_time_decode_length: float = 60) -> np.ndarray:
    """ClearVoice package decode of an already `audio_norm`-ed mixture. [T] -> [C, T].

    Segmented when T > sample_rate * one_time_decode_length. Each speaker is scaled so that its RMS,
    taken over the padded output, equals the RMS of the unpadded input; then cut to T.
    """
    mixture = np.asarray(mixture, dtype=np.float64).reshape(-1)
    out = _decode(model, mixture, sample_rate, decode_window, int(sample_rate * one_time_decode_length))
    rms_in = np.sqrt(np.mean(mixture**2))
    rms_out = np.sqrt(np.mean(out**2, axis=-1, keepdims=True))
    return (out / rms_out * rms_in)[:, : len(mixture)].astype(np.float32)


# ---------------------------------------------------------------- per checkpoint format

CLEARVOICE_16K = {"decode_window": 2, "one_time_decode_length": 2}  # the ClearVoice package's MossFormer2_SS_16K
CLEARERVOICE_TRAIN = {"decode_window": 1, "one_time_decode_length": 60}  # the published 8 kHz inference config


def clearvoice_pipeline(sample_rate: int) -> Pipeline:
    """ClearerVoice MossFormer2: at 16 kHz the ClearVoice package (audio_norm, then its decode); at other rates
    (8 kHz has no package model) the training-side decode with the published inference settings."""
    if sample_rate == 16000:
        def package(model: Separate, mixture: np.ndarray) -> np.ndarray:
            normed, _ = audio_norm(mixture)  # not undone for separation outputs
            return clearvoice_decode(model, normed, sample_rate, **CLEARVOICE_16K)
        return package

    def training_side(model: Separate, mixture: np.ndarray) -> np.ndarray:
        return train_decode(model, mixture, sample_rate, **CLEARERVOICE_TRAIN)
    return training_side


# the official formats mossep loads (LoadedModel.source); "mossep" is its own
OFFICIAL_FORMATS = ("modelscope", "modelscope2", "standalone", "clearvoice")


def for_checkpoint(source: str, sample_rate: int) -> Pipeline:
    """The official pipeline of a checkpoint format (LoadedModel.source, or a converted file's recorded
    source_format); mossep's own checkpoints have none, so theirs is the plain network output."""
    if source in ("modelscope", "modelscope2"):
        return modelscope_pipeline
    if source == "standalone":
        return standalone_inference
    if source == "clearvoice":
        return clearvoice_pipeline(sample_rate)
    return one_pass
