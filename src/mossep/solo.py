"""A talker alone: where only one voice is speaking, that voice's output gets the whole mixture and every other
output silence; and which outputs carry speech at all.

A separation model always returns C outputs. Where only one person speaks (a monologue, or one talker's turn in
a conversation), mossep's default model splits that voice between its outputs: part of the talker (some
frames, or a share of its level) lands in an output that should be silent, leaving a residue only 9-13 dB
below the talker. A gate on the quieter output does not remove it (the residue is not quiet leakage), so this
module decides *where one voice is alone* and reassigns the signal there:

1. Frames (FRAME_SECONDS, HOP_SECONDS): a frame holds a second voice when another output is within
   SECOND_VOICE_DB of the loudest and its magnitude spectrum differs from the loudest's (cosine below
   SAME_VOICE_COS: different pitch harmonics and formants). A residue of the same talker has the same
   spectrum (cosine near 1), two talkers at once do not (`second_voice_frames`).
2. Regions: a frame is in an overlap when, within REGION_SECONDS around it, more than OVERLAP_SHARE of the
   active frames hold a second voice; the overlap is widened by GUARD_SECONDS (`overlap_frames`). Everything
   else is one voice (or silence) and is split into stretches between overlaps.
3. Who speaks in a stretch (`stretch_targets`): each frame goes to the output with the most energy around it
   (SMOOTH_SECONDS), among the outputs that clearly lead some of the stretch (DOMINANT_DB, MIN_RUN_SECONDS).
   Two such outputs are either two voices taking turns without overlapping, or one voice the model moved
   between its outputs (it does, often at a pause). The model itself tells them apart: a snippet of each,
   played at once, is separated by it (`separation_gain`); two voices come apart by several dB, one voice
   does not (under SEPARABLE_DB, with PROBE_MIN_SECONDS of each), and then that output's part goes to the
   output with the most energy in the stretch. Without a confirmed turn, the whole stretch goes there.
   A safety check keeps the estimates wherever the move would carry much energy (MAX_MOVED_DB within
   MOVED_WINDOW_SECONDS) that does not look like the output it goes to (SAME_SPECTRUM_COS), and every stretch
   that would move more than MAX_ALIKE_DB of its energy: a second talker's short word, two similar voices the
   model barely separated, or a separation that failed (two outputs alike), are not known to be one voice.
4. Reassignment (`reassign`): in one-voice frames the chosen output is the mixture and the others are zero;
   in overlaps the estimates are kept; RAMP_SECONDS raised-cosine ramps between the two. The outputs still
   sum to the mixture where they did.

`speech_report` / `SpeechMeter` say how much speech each output carries (frames at most SILENT_DB below the
loudest output and not near silence), for the report of which outputs carry speech.

Pure functions on numpy arrays (C outputs, T samples, N frames, F bins) plus `SpeechMeter`, a small streaming
accumulator. Constants chosen on the validation speakers (benchmarks/bench_solo.py), never the devset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import tracking
from .chunking import fit_to_mixture
from .metrics import si_snr

Separate = Callable[[np.ndarray], np.ndarray]  # a mixture [L] -> estimates [C, L] (the model)

# Whether mossep reassigns one-voice stretches by default (Separator(solo=None), CLI --solo/--no-solo).
SOLO = True
FRAME_SECONDS = 0.032  # analysis frame (256 samples at 8 kHz): resolves pitch harmonics
HOP_SECONDS = 0.016
ACTIVE_DB = -25.0  # a frame is active when the mixture is at most this far below the chunk's mean power
SECOND_VOICE_DB = 20.0  # another output within this many dB of the loudest ...
SAME_VOICE_COS = 0.7  # ... whose spectrum has a cosine below this with the loudest's is a second voice
REGION_SECONDS = 1.0  # the window over which the share of second-voice frames is counted
OVERLAP_SHARE = 0.15  # more than this share of the active frames in the window: an overlap
GUARD_SECONDS = 0.25  # an overlap is widened by this much on each side
DOMINANT_DB = 6.0  # an output leads a frame when it is this much louder than every other output
MIN_RUN_SECONDS = 0.5  # leading frames an output needs in a stretch to count as a voice of its own there
PROBE_SECONDS = 2.0  # at most this much of each leading output's frames goes into the same-voice probe ...
PROBE_MIN_SECONDS = 1.0  # ... and at least this much, else the two are taken as two voices (shorter: unreliable)
SEPARABLE_DB = 4.0  # the model separates the probe by at least this much (separation_gain): two voices
MAX_MOVED_DB = -6.0  # within MOVED_WINDOW_SECONDS, at most this share of the energy may move to other outputs ...
MOVED_WINDOW_SECONDS = 0.5
SAME_SPECTRUM_COS = 0.9  # ... unless what moves has the spectrum of where it goes (cosine at least this)
MAX_ALIKE_DB = -6.0  # over a whole stretch at most this share may move at all: outputs of near-equal level and
#                      spectrum are as likely a separation that failed (both hold the mixture) as one voice split
SMOOTH_SECONDS = 0.5  # with turn-taking, a frame goes to the output with the most energy within this window
RAMP_SECONDS = 0.05  # cross-fade between reassigned and kept frames
SILENT_DB = -30.0  # an output frame this far below the loudest output's is silence (the 30 dB)
SPEECH_FLOOR_DB = -30.0  # ... and so is one this far below the recording's mean power (pauses)
MIN_SPEECH_SECONDS = 0.3  # an output carries speech when it has at least this much of speech frames
EPS = 1e-12


def _frames(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Frames [..., N, frame] of x [..., T] every HOP_SECONDS (a view), and the hop in samples."""
    frame = max(int(round(FRAME_SECONDS * sample_rate)), 16)
    hop = max(int(round(HOP_SECONDS * sample_rate)), 1)
    if x.shape[-1] < frame:
        return np.zeros(x.shape[:-1] + (0, frame)), hop
    return np.lib.stride_tricks.sliding_window_view(x, frame, axis=-1)[..., ::hop, :], hop


def frame_spectra(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(magnitude spectra [C, N, F], levels [C, N] in dB) of signals x [C, T]."""
    frames, _ = _frames(np.asarray(x, dtype=np.float64), sample_rate)
    level = 10 * np.log10(np.mean(frames ** 2, axis=-1) + EPS)
    mag = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[-1]), axis=-1))
    return mag, level


def cosine_to_loudest(mag: np.ndarray, level: np.ndarray) -> np.ndarray:
    """[C, N]: cosine between each output's magnitude spectrum and the loudest output's, frame by frame (1 for
    the loudest; one voice split between outputs has the same spectrum in both, two voices do not)."""
    C, N = level.shape
    loud = np.argmax(level, axis=0)
    top = mag[loud, np.arange(N)]  # [N, F]
    norm = np.linalg.norm(mag, axis=-1)  # [C, N]
    return np.einsum("cnf,nf->cn", mag, top) / np.maximum(norm * norm[loud, np.arange(N)], EPS)


def second_voice_frames(cos: np.ndarray, level: np.ndarray, second_db: float = SECOND_VOICE_DB,
                        same_cos: float = SAME_VOICE_COS) -> np.ndarray:
    """bool [N]: frames where some output other than the loudest is within second_db of it and has a spectrum
    unlike the loudest's (cosine_to_loudest below same_cos)."""
    C, N = level.shape
    if C < 2 or N == 0:
        return np.zeros(N, dtype=bool)
    loud = np.argmax(level, axis=0)
    near = level > level[loud, np.arange(N)] - second_db
    near[loud, np.arange(N)] = False
    return np.any(near & (cos < same_cos), axis=0)


def _window_sum(x: np.ndarray, width: int) -> np.ndarray:
    """Sum of x over a centred window of `width` frames (truncated at the ends)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    n = len(x)
    lo = np.clip(np.arange(n) - width // 2, 0, n)
    hi = np.clip(np.arange(n) + width - width // 2, 0, n)
    return c[hi] - c[lo]


def overlap_frames(second: np.ndarray, active: np.ndarray, hop_seconds: float,
                   region_seconds: float = REGION_SECONDS, share: float = OVERLAP_SHARE,
                   guard_seconds: float = GUARD_SECONDS) -> np.ndarray:
    """bool [N]: frames in an overlap of two or more voices: within region_seconds around the frame more than
    `share` of the active frames hold a second voice; widened by guard_seconds on each side."""
    n = len(second)
    if n == 0:
        return np.zeros(0, dtype=bool)
    width = max(int(round(region_seconds / hop_seconds)), 1)
    hits = _window_sum((second & active).astype(np.float64), width)
    count = _window_sum(active.astype(np.float64), width)
    ov = hits > share * np.maximum(count, 1.0)
    guard = int(round(guard_seconds / hop_seconds))
    if guard > 0 and ov.any():
        ov = _window_sum(ov.astype(np.float64), 2 * guard + 1) > 0
    return ov


def stretches(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a bool [N] mask."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def lead_masks(level: np.ndarray, floor_db: float) -> np.ndarray:
    """bool [C, N]: frames an output clearly leads (active, DOMINANT_DB above every other output;
    mossep.tracking.counted_frames)."""
    return tracking.counted_frames(level, floor_db, DOMINANT_DB)


def snippet(mix: np.ndarray, frames: np.ndarray, hop: int, frame: int, limit: int) -> np.ndarray:
    """The mixture's samples under the given frames (bool [N]), in order, at most `limit` of them."""
    keep = np.zeros(len(mix), dtype=bool)
    for i in np.flatnonzero(frames):
        keep[i * hop: i * hop + frame] = True
    return mix[keep][:limit]


def separation_gain(snippets: list[np.ndarray], separate: Separate) -> float:
    """How well `separate` pulls apart equal-level snippets played at once (dB): the mean over snippets of the
    best output's SI-SNR against the snippet minus the mixture's. Two voices: several dB; one voice (two
    stretches of the same talker): about 0, since a separation model cannot split a voice from itself."""
    n = min(len(x) for x in snippets)
    refs = np.stack([x[:n] / np.sqrt(np.mean(np.square(x[:n], dtype=np.float64)) + EPS) for x in snippets])
    probe = refs.sum(0)
    out = np.asarray(separate((0.05 * probe).astype(np.float32)), dtype=np.float64)  # a typical speech level
    out, probe = torch.from_numpy(out), torch.from_numpy(probe)
    return float(np.mean([float(si_snr(out, torch.from_numpy(r)).max() - si_snr(probe, torch.from_numpy(r)))
                          for r in refs]))


def stretch_targets(power: np.ndarray, lead: np.ndarray, mag: np.ndarray, mix: np.ndarray, start: int, end: int,
                    hop: int, frame: int, sample_rate: int, separate: Separate | None) -> np.ndarray:
    """int [end - start]: the output that carries the one voice in each frame of a one-voice stretch.

    power [C, N]: frame powers of the outputs; lead [C, N]: lead_masks; mag [C, N, F]: their spectra. Each frame
    goes to the output with the most energy within SMOOTH_SECONDS around it, but outputs that lead only briefly
    (under MIN_RUN_SECONDS) are not candidates, and when several outputs lead parts of the stretch, each is asked whether it holds the same
    voice as the one with the most energy: `separate` (the model) is given a snippet of each at once, and if
    it cannot pull them apart (separation_gain under SEPARABLE_DB) the model had moved one voice between its
    outputs, and that output's frames go to the main one. Without `separate`, they stay where they are.

    What would move to another output (beyond the frames of outputs the model confirmed as the same voice) must,
    within MOVED_WINDOW_SECONDS around each frame, be little (MAX_MOVED_DB of the energy there) or have the
    spectrum of the output it moves to (power-weighted cosine at least SAME_SPECTRUM_COS; 0 to a silent one);
    otherwise it is not one voice there after all (e.g. a second talker's last word, or two similar voices the
    model barely separated), and those frames, widened by GUARD_SECONDS, are left as they are: -1. A stretch
    that would move more than MAX_ALIKE_DB of its energy in all is left as it is.
    """
    p = power[:, start:end]
    main = int(np.argmax(p.sum(1)))
    leaders = [c for c in np.flatnonzero(lead[:, start:end].sum(1) * HOP_SECONDS >= MIN_RUN_SECONDS) if c != main]
    limit = int(PROBE_SECONDS * sample_rate)
    mine, merged = [main], []
    for c in leaders:
        parts = [snippet(mix[start * hop:], lead[k, start:end], hop, frame, limit) for k in (main, c)]
        if separate is not None and min(len(x) for x in parts) >= PROBE_MIN_SECONDS * sample_rate and \
                separation_gain(parts, separate) < SEPARABLE_DB:
            merged.append(c)  # one voice: goes to main
        else:
            mine.append(c)
    if len(mine) == 1:
        targets = np.full(end - start, main)
    else:
        width = max(int(round(SMOOTH_SECONDS / HOP_SECONDS)), 1)
        local = np.stack([_window_sum(row, width) for row in p])
        targets = np.asarray(mine)[np.argmax(local[mine], axis=0)]
    moving = np.arange(len(p))[:, None] != targets[None, :]  # [C, n]
    for c in merged:
        moving[c] &= ~lead[c, start:end]  # confirmed by the model
    moved = p * moving
    width = max(int(round(MOVED_WINDOW_SECONDS / HOP_SECONDS)), 1)
    local_moved = _window_sum(moved.sum(0), width)
    share = local_moved / np.maximum(_window_sum(p.sum(0), width), EPS)
    m = mag[:, start:end]
    to = m[targets, np.arange(end - start)]  # [n, F]: the spectrum of where each frame goes
    norm = np.linalg.norm(m, axis=-1)
    cos = np.einsum("cnf,nf->cn", m, to) / np.maximum(norm * norm[targets, np.arange(end - start)], EPS)
    alike = _window_sum((moved * cos).sum(0), width) / np.maximum(local_moved, EPS)
    if moved.sum() > 10 ** (MAX_ALIKE_DB / 10) * p.sum():
        return np.full(end - start, -1)  # about half the stretch would move: not known to be one voice
    unsafe = (share > 10 ** (MAX_MOVED_DB / 10)) & (alike < SAME_SPECTRUM_COS)
    if unsafe.any():
        guard = int(round(GUARD_SECONDS / HOP_SECONDS))
        targets = np.where(_window_sum(unsafe.astype(np.float64), 2 * guard + 1) > 0, -1, targets)
    return targets


def _ramp(x: np.ndarray, hop: int, frame: int, length: int, ramp: int) -> np.ndarray:
    """Frame values x [..., N] (frame i centred at i * hop + frame / 2) to samples [..., length], smoothed by a
    raised-cosine kernel of `ramp` samples."""
    frame_centres = np.arange(x.shape[-1]) * hop + frame / 2
    t = np.arange(length)
    out = np.stack([np.interp(t, frame_centres, row) for row in x.reshape(-1, x.shape[-1])])
    if ramp > 1:
        k = np.hanning(ramp + 2)[1:-1]
        k /= k.sum()
        pad = ramp // 2
        padded = np.pad(out, ((0, 0), (pad, ramp - 1 - pad)), mode="edge")
        out = np.stack([np.convolve(row, k, mode="valid") for row in padded])
    return out.reshape(x.shape[:-1] + (length,))


def one_voice_targets(est: np.ndarray, mix: np.ndarray, sample_rate: int,
                      separate: Separate | None = None) -> np.ndarray:
    """int [N] per analysis frame: the output that carries the one voice there, or -1 in overlaps.

    est [C, T] level-fitted to mix [T] (see reassign); separate: see stretch_targets."""
    mag, level = frame_spectra(est, sample_rate)
    N = level.shape[1]
    targets = np.full(N, -1)
    if N == 0:
        return targets
    _, mix_level = frame_spectra(mix[None], sample_rate)
    floor_db = 10 * np.log10(np.mean(np.square(mix, dtype=np.float64)) + EPS) + ACTIVE_DB
    cos = cosine_to_loudest(mag, level)
    ov = overlap_frames(second_voice_frames(cos, level), mix_level[0] > floor_db, HOP_SECONDS)
    lead = lead_masks(level, floor_db)
    hop = max(int(round(HOP_SECONDS * sample_rate)), 1)
    frame = max(int(round(FRAME_SECONDS * sample_rate)), 16)
    for s, e in stretches(~ov):
        targets[s:e] = stretch_targets(10 ** (level / 10), lead, mag, mix, s, e, hop, frame, sample_rate, separate)
    return targets


def reassign(est: np.ndarray, mix: np.ndarray, sample_rate: int, separate: Separate | None = None) -> np.ndarray:
    """Estimates [C, T] with one-voice stretches reassigned: the output carrying the voice becomes the mixture
    there, the others zero; overlaps keep the estimates (level-fitted to the mixture). float64 [C, T].

    est [C, T] at any level (each output's gain is fitted to the mixture first), mix [T]. separate: the model
    as a function [L] -> [C, L], to tell one voice moved between outputs from two voices taking turns
    (stretch_targets); None keeps such turns where the estimates put them. C = 1 or a signal shorter than one
    frame: only the level fit.
    """
    est = np.asarray(est, dtype=np.float64)
    mix = np.asarray(mix, dtype=np.float64)
    est = est * fit_to_mixture(est, mix)[:, None]
    C, T = est.shape
    if C < 2:
        return est
    scale = np.sqrt(np.mean(np.square(mix))) or 1.0  # decide on unit-level signals: the same at any input level
    targets = one_voice_targets(est / scale, mix / scale, sample_rate, separate)
    if len(targets) == 0:
        return est
    hop = max(int(round(HOP_SECONDS * sample_rate)), 1)
    onehot = (targets[None, :] == np.arange(C)[:, None]).astype(np.float64)  # [C, N]; all 0 in overlaps
    frame = max(int(round(FRAME_SECONDS * sample_rate)), 16)
    share = _ramp(onehot, hop, frame, T, int(round(RAMP_SECONDS * sample_rate)))  # [C, T]
    solo = share.sum(0)  # 1 where one voice, 0 in overlaps
    return est * (1.0 - solo)[None] + share * mix[None]


def frame_levels(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Non-overlapping FRAME_SECONDS frame powers [C, N] (linear) of x [C, T]; a trailing partial frame is
    dropped."""
    frame = max(int(round(FRAME_SECONDS * sample_rate)), 1)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1] // frame
    return np.mean(x[:, :n * frame].reshape(x.shape[0], n, frame) ** 2, axis=-1)


def speech_frames(power: np.ndarray, mean_power: float) -> np.ndarray:
    """bool [C, N]: output frames that hold speech: at most SILENT_DB below the loudest output in that frame
    and at most SPEECH_FLOOR_DB below `mean_power` (the recording's mean power of all outputs together)."""
    power = np.asarray(power, dtype=np.float64)
    if power.size == 0:
        return np.zeros(power.shape, dtype=bool)
    loud = power.max(0, keepdims=True)
    return (power > loud * 10 ** (SILENT_DB / 10)) & (power > max(mean_power, EPS) * 10 ** (SPEECH_FLOOR_DB / 10))


@dataclass(frozen=True)
class SpeechReport:
    """Which outputs carry speech: speech[k] is True when output k has at least MIN_SPEECH_SECONDS of speech
    frames (speech_frames); seconds[k] is how much. noisy_chunks: (chunks the noisy-room model separated, all
    chunks) where the separator has such a model (mossep.gate), else None."""
    speech: tuple[bool, ...]
    seconds: tuple[float, ...]
    noisy_chunks: tuple[int, int] | None = None


def speech_report(x: np.ndarray, sample_rate: int) -> SpeechReport:
    """Which outputs of x [C, T] (e.g. what Separator.separate returns) carry speech."""
    x = np.asarray(x)
    meter = SpeechMeter(x.shape[0], sample_rate)
    meter.add(x)
    return meter.report()


class SpeechMeter:
    """Counts each output's speech seconds over a stream of [C, t] blocks (the recording's outputs in order).

    Keeps one power per output per FRAME_SECONDS (about 2 MB per hour of two outputs)."""

    def __init__(self, num_spks: int, sample_rate: int):
        self.C = int(num_spks)
        self.sample_rate = int(sample_rate)
        self.frame = max(int(round(FRAME_SECONDS * sample_rate)), 1)
        self.rest = np.zeros((self.C, 0))
        self.powers: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        x = np.concatenate([self.rest, np.asarray(block, dtype=np.float64).reshape(self.C, -1)], axis=1)
        n = x.shape[1] // self.frame * self.frame
        if n:
            self.powers.append(frame_levels(x[:, :n], self.sample_rate))
        self.rest = x[:, n:]

    def seconds(self) -> np.ndarray:
        """Speech seconds [C] so far (a trailing partial frame counts when it is at least half a frame)."""
        parts = list(self.powers)
        if self.rest.shape[1] * 2 >= self.frame:
            parts.append(np.mean(self.rest ** 2, axis=1, keepdims=True))
        if not parts:
            return np.zeros(self.C)
        power = np.concatenate(parts, axis=1)
        mean_power = float(power.sum(0).mean())
        return speech_frames(power, mean_power).sum(1) * self.frame / self.sample_rate

    def report(self) -> SpeechReport:
        seconds = self.seconds()
        return SpeechReport(tuple(bool(s >= MIN_SPEECH_SECONDS) for s in seconds),
                            tuple(round(float(s), 3) for s in seconds))
