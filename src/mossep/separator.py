"""The Python API: separate a mixture (array or file) into one signal per speaker.

    from mossep import Separator
    sep = Separator()                          # the default model, CPU or CUDA
    est = sep.separate(mix, 16000)             # [C, T] float32 at 16 kHz
    paths = sep.separate_file("talk.flac", "out/")

Long inputs are separated in overlapping chunks (see mossep.chunking) and streamed from and to disk, so
memory does not depend on the recording length.
"""
from __future__ import annotations

import logging
import string
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch

from .audio import (InputAudio, SpeakerSink, StreamResampler, check_channel, check_finite, check_output_format,
                    check_writable_dir, open_input, read_mono_blocks, resample_blocks, resampled_length)
from .checkpoints import LoadedModel, load_checkpoint
from .hub import is_bundled
from .chunking import (DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, OverlapAdd, is_regular, plan_chunks)
from .ensemble import MAX_PASSES, merge_views, view_signs
from .errors import MossepError
from .fsutil import check_output_file, existing_outputs, remove_stale_temps, removing_new_dirs_on_error
from .gate import NOISY_BELOW_DB, sounds_noisy
from .hum import without_hum
from .official_pipelines import OFFICIAL_FORMATS, for_checkpoint
from .level import to_model_level, training_level_dbfs
from .postfilter import post_filter
from .solo import SOLO, SpeechMeter, SpeechReport, reassign
from .tracking import TRACK_SPEAKERS

Progress = Callable[[float, "float | None"], None]  # (seconds done, seconds in total or None)
Note = Callable[[str], None]
DEFAULT_FILENAME = "{stem}_spk{k}.wav"
CUDA_BATCH = 4  # chunks per forward pass on CUDA

log = logging.getLogger("mossep")


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda if available else cpu; checks that a requested CUDA device exists."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MossepError(f"unknown device {name!r} (use cpu, cuda or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MossepError("device cuda requested but CUDA is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise MossepError(f"unsupported device {name!r} (use cpu, cuda or auto)")
    return dev


def output_names(template: str, stem: str, num_spks: int, fmt: str = "wav", ext: str = "") -> list[str]:
    """File names for speakers 1..C from a template with {stem}, {k} (1-based speaker number) and
    {ext} (the input's extension without the dot)."""
    if template == DEFAULT_FILENAME and fmt.lower() != "wav":
        template = f"{{stem}}_spk{{k}}.{fmt.lower()}"
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:  # e.g. an unmatched brace
        raise MossepError(f"--filename {template!r}: {e}") from None
    unknown = fields - {"stem", "k", "ext"}
    if unknown or "k" not in fields:
        raise MossepError(f"--filename {template!r}: use {{stem}}, {{ext}} and {{k}} (the speaker number), "
                          f"e.g. {DEFAULT_FILENAME}")
    try:
        names = [template.format(stem=stem, k=k, ext=ext) for k in range(1, num_spks + 1)]
    except (ValueError, IndexError) as e:
        raise MossepError(f"--filename {template!r}: {e}") from None
    if len(set(names)) < len(names):
        raise MossepError(f"--filename {template!r}: gives several speakers the same name "
                          f"({max(names, key=names.count)}); {{k}} must tell them apart")
    if any(not n or n.endswith(("/", "\\")) or n.rsplit("/", 1)[-1] in (".", "..") for n in names):
        raise MossepError(f"--filename {template!r}: gives an empty file name (or one that names a folder)")
    if any("\x00" in n for n in names):
        raise MossepError(f"--filename {template!r}: gives a name with a NUL character")
    if any(Path(n).is_absolute() or ".." in Path(n).parts for n in names):
        raise MossepError(f"--filename {template!r}: names must stay inside the output folder (no leading / or ..)")
    return names


def whole_rate(rate, what: str = "sample rate") -> int:
    """A sample rate as a positive int; a fractional or non-positive one is a MossepError (never truncated)."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise MossepError(f"{what} must be a whole number of Hz, got {rate!r}") from None
    if not np.isfinite(value) or value != int(value):
        raise MossepError(f"{what} must be a whole number of Hz, got {rate}")
    if value <= 0:
        raise MossepError(f"{what} must be positive, got {rate}")
    return int(value)


def recommended_settings(metadata: dict | None) -> dict:
    """Inference settings a checkpoint's metadata recommends ("inference": {"passes": 2, "wiener": true,
    "solo": false, "noisy_model": "robust", "noisy_below_db": 15}), falling back to 1 pass, no post-filter, no say
    on the one-voice step (None) and no noisy-room model (None) for anything absent or invalid. A noisy-room model
    must be one of the models bundled with mossep (a file's metadata never makes mossep fetch anything)."""
    rec = (metadata or {}).get("inference")
    rec = rec if isinstance(rec, dict) else {}  # a file's metadata is untrusted: a list or string here is ignored
    passes = rec.get("passes", 1)
    wiener = rec.get("wiener", False)
    solo = rec.get("solo")
    noisy, below = rec.get("noisy_model"), rec.get("noisy_below_db", NOISY_BELOW_DB)
    return {"passes": passes if type(passes) is int and 1 <= passes <= MAX_PASSES else 1,
            "wiener": wiener if isinstance(wiener, bool) else False,
            "solo": solo if isinstance(solo, bool) else None,
            "noisy_model": noisy if isinstance(noisy, str) and is_bundled(noisy) else None,
            "noisy_below_db": float(below) if type(below) in (int, float) and 0 < below < 100 else NOISY_BELOW_DB}


class OutputFiles(list):
    """The output paths of separate_file (a list, one per speaker), with `.speech`: whether each carries speech
    (tuple of bool), and `.speech_seconds`: how much (mossep.solo.SpeechMeter)."""

    def __init__(self, paths: Iterable[Path], report: SpeechReport):
        super().__init__(paths)
        self.report = report
        self.speech, self.speech_seconds = report.speech, report.seconds


@dataclass
class ChunkCount:
    """How many of a recording's chunks went to the noisy-room model (mossep.gate), of how many."""
    noisy: int = 0
    total: int = 0


@dataclass
class Network:
    """A network and how it is run on each chunk: its input polarities (passes) and the post-filter."""
    model: Callable[[torch.Tensor], torch.Tensor]
    signs: list[float]
    wiener: bool


class Separator:
    """A loaded separation model plus the settings to run it on recordings of any length.

    model: a checkpoint path, a model name from `mossep models` (fetched on first use), a LoadedModel, or
    None for the default model. device: "auto", "cpu", "cuda".
    chunk_seconds: chunk length (0 = whole input at once); overlap_seconds: overlap between chunks.
    threads: torch CPU threads. fast: use mossep.fast.make_fast. model_rate: sample rate of checkpoints that
    do not store it. passes: 1 = separate each chunk once; 2 = also separate its polarity-inverted copy and
    average the two (mossep.ensemble; twice the compute). wiener: re-take each speaker from the mixture through
    soft masks made from the estimates (mossep.postfilter). passes/wiener None = what the checkpoint's metadata
    recommends (see recommended_settings), else 1 pass and no post-filter. track_speakers: keep each talker on
    its output across chunks by voice profiles too, not only the overlap match (mossep.tracking); None = the
    default there (TRACK_SPEAKERS). remove_hum: take a steady 50/60 Hz mains hum out of each chunk before
    separating it (mossep.hum; nothing is changed where none is found). raw: the official output, exactly: none
    of the above (one pass over the whole input, no DC or hum removal, no level fit or peak limiting), and instead
    the official pipeline of the checkpoint's format (mossep.official_pipelines.for_checkpoint). solo: where one
    voice speaks alone, give its output the mixture and the other outputs silence (mossep.solo); None = on for
    mossep's own checkpoints (where it was measured), off for official ones; always off with raw. backend:
    "torch", or "onnx": the network runs in onnxruntime (exported once into the cache folder and checked against
    PyTorch, mossep.export; CPU, exact mode only). noisy_model: a second model (same rate and talkers) for the
    chunks that sound noisy or reverberant (mossep.gate: frame-energy range below noisy_below_db), run with its
    own recommended passes and post-filter unless passes/wiener are given; None = the checkpoint's
    recommendation (the default model names the bundled `robust`), False = none; never with raw.
    """

    def __init__(self, model: str | Path | LoadedModel | None = None, device: str = "auto",
                 chunk_seconds: float | None = None, overlap_seconds: float | None = None,
                 threads: int | None = None, fast: bool = False, model_rate: int | None = None,
                 batch_size: int | None = None, passes: int | None = None, wiener: bool | None = None,
                 track_speakers: bool | None = None, remove_hum: bool = True, raw: bool = False,
                 solo: bool | None = None, backend: str = "torch",
                 noisy_model: str | Path | LoadedModel | bool | None = None, noisy_below_db: float | None = None):
        if backend not in ("torch", "onnx"):
            raise MossepError(f"--backend must be torch or onnx, got {backend!r}")
        if backend == "onnx" and fast:
            raise MossepError("--fast is a torch mode; --backend onnx runs the exact network: drop one")
        if backend == "onnx" and str(device) not in ("auto", "cpu"):
            raise MossepError(f"--backend onnx runs on the CPU (onnxruntime); --device {device} contradicts it")
        if threads is not None:
            if threads < 1:
                raise MossepError(f"--threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        self.device = resolve_device("cpu" if backend == "onnx" else device)
        self.loaded = model if isinstance(model, LoadedModel) else load_checkpoint(model, sample_rate=model_rate)
        self.config = self.loaded.config
        self.raw = bool(raw)
        # the format the weights were published in (a converted official checkpoint keeps its own)
        fmt = self.loaded.metadata.get("source_format") if self.loaded.source == "mossep" else self.loaded.source
        self.format = fmt if fmt in OFFICIAL_FORMATS else "mossep"
        if self.raw:
            chunk_seconds, passes, wiener, remove_hum = self._raw_settings(fast, chunk_seconds, passes, wiener)
            self.official = for_checkpoint(self.format, self.sample_rate)
        if fast and self.device.type != "cpu":
            raise MossepError("--fast is a CPU mode (bf16 or int8 mask net); on CUDA the default already runs "
                              "under bf16/fp16 autocast: drop --fast, or use --device cpu")
        self.chunk_seconds = DEFAULT_CHUNK_SECONDS if chunk_seconds is None else float(chunk_seconds)
        self.overlap_seconds = DEFAULT_OVERLAP_SECONDS if overlap_seconds is None else float(overlap_seconds)
        sr = self.sample_rate
        if not np.isfinite(self.chunk_seconds) or self.chunk_seconds < 0:
            raise MossepError(f"--chunk-seconds must be >= 0 (0 = whole file), got {self.chunk_seconds}")
        if not np.isfinite(self.overlap_seconds) or self.overlap_seconds < 0:
            raise MossepError(f"--overlap-seconds must be >= 0, got {self.overlap_seconds}")
        self.chunk = int(round(self.chunk_seconds * sr))
        self.overlap = int(round(self.overlap_seconds * sr)) if self.chunk else 0
        if self.chunk and self.chunk < self.config.min_samples:
            raise MossepError(f"--chunk-seconds {self.chunk_seconds} is shorter than the model minimum "
                              f"({self.config.min_samples} samples at {sr} Hz)")
        if self.chunk and self.overlap >= self.chunk:
            raise MossepError(f"--overlap-seconds ({self.overlap_seconds}) must be shorter than --chunk-seconds "
                              f"({self.chunk_seconds})")
        rec = recommended_settings(self.loaded.metadata)
        given_passes, given_wiener = passes, wiener  # for the noisy-room model: its own recommendation unless given
        passes = rec["passes"] if passes is None else passes
        try:
            self.signs = view_signs(passes)  # the input polarity of each pass
        except ValueError:
            raise MossepError(f"--passes must be 1 or 2, got {passes}") from None
        self.passes = len(self.signs)
        self.wiener = bool(rec["wiener"] if wiener is None else wiener)
        self.batch_size = batch_size or (CUDA_BATCH if self.device.type == "cuda" else 1)
        self.track_speakers = TRACK_SPEAKERS if track_speakers is None else bool(track_speakers)
        self.remove_hum = bool(remove_hum)
        if solo is None:  # measured on mossep's own checkpoints only; an official one (e.g. the WHAMR! model, which
            # removes noise and reverberation) would get the mixture back where one voice speaks: off there.
            # A mossep checkpoint may say (a model that denoises, or that silences the other output itself)
            solo = (SOLO if rec["solo"] is None else rec["solo"]) and self.format == "mossep"
        self.solo = bool(solo) and not self.raw
        self.amp_dtype = None
        if self.device.type == "cuda" and not self.raw:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.backend = backend
        if noisy_model is True:
            raise MossepError("noisy_model: give a model (name, path or LoadedModel), False for none, or None")
        noisy = rec["noisy_model"] if noisy_model is None else noisy_model
        self.noisy_below_db = rec["noisy_below_db"] if noisy_below_db is None else float(noisy_below_db)
        if not 0 < self.noisy_below_db < 100:
            raise MossepError(f"noisy_below_db must be between 0 and 100 dB, got {noisy_below_db}")
        self.noisy_loaded = None
        if noisy is not False and noisy is not None and not self.raw:
            try:
                self.noisy_loaded = noisy if isinstance(noisy, LoadedModel) else load_checkpoint(noisy, sample_rate=model_rate)
            except MossepError as e:  # say which of the two models it is
                raise MossepError(f"--noisy-model: {e}") from None
            got = self.noisy_loaded.config
            if (got.sample_rate, got.num_spks) != (self.sample_rate, self.num_speakers):
                raise MossepError(f"{self.noisy_loaded.path}: the noisy-room model separates {got.num_spks} talkers at "
                                  f"{got.sample_rate} Hz; the model separates {self.num_speakers} at {self.sample_rate}")
        # last: every option is checked before the networks are converted (or, for onnx, first exported)
        self.model = self._network(self.loaded, fast, backend, threads, copy=isinstance(model, LoadedModel))
        self.noisy = None
        if self.noisy_loaded is not None:
            nrec = recommended_settings(self.noisy_loaded.metadata)
            self.noisy = Network(self._network(self.noisy_loaded, fast, backend, threads,
                                               copy=isinstance(noisy, LoadedModel)),
                                 view_signs(nrec["passes"] if given_passes is None else self.passes),
                                 bool(nrec["wiener"] if given_wiener is None else given_wiener))

    def _network(self, loaded: LoadedModel, fast: bool, backend: str, threads: int | None,
                 copy: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """`loaded`'s network as this separator runs it: in bf16 (fast), with prepacked float32 linear layers
        (exact, on a CPU), or in onnxruntime (backend onnx: the first use exports and checks the model). copy:
        leave loaded.model as it is (a model the caller passed in); otherwise it is converted in place (no
        second copy of the weights)."""
        if backend == "onnx":
            from .export import OnnxNetwork
            return OnnxNetwork(loaded, threads=threads or torch.get_num_threads(), note=log.info)
        net = loaded.model.to(self.device).eval()
        if fast:
            try:
                from .fast import make_fast
            except ImportError:
                raise MossepError("fast mode is not available") from None
            return make_fast(net, copy=copy)
        if self.device.type == "cpu" and not self.raw:
            from .fast import onednn_linear_available, pack_linears

            if onednn_linear_available():  # exact float32, prepacked linear layers (summation order only differs)
                return pack_linears(net, copy=copy)
        return net

    @staticmethod
    def _raw_settings(fast: bool, chunk_seconds, passes, wiener) -> tuple:
        """(chunk_seconds, passes, wiener, remove_hum) for raw; an explicit conflicting setting is an error."""
        for given, name in ((fast, "--fast"), (chunk_seconds not in (None, 0), "--chunk-seconds"),
                            (passes not in (None, 1), "--passes"), (bool(wiener), "--wiener")):
            if given:
                raise MossepError(f"--raw gives the official pipeline's output, which {name} would change; drop one")
        return 0.0, 1, False, False

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def num_speakers(self) -> int:
        return int(self.config.num_spks)

    # -- the engine ---------------------------------------------------------------------------------------
    def _run_model(self, x: torch.Tensor, model: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
        model = self.model if model is None else model
        with torch.inference_mode():
            if self.amp_dtype is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                    y = model(x)
            else:
                y = model(x)
        return y.float().cpu().numpy().astype(np.float64)

    def _clean(self, chunk: np.ndarray) -> np.ndarray:
        """A chunk without its DC offset and, with remove_hum, without mains hum; float32 (raw: unchanged)."""
        if self.raw:
            return np.asarray(chunk, dtype=np.float32)
        x = chunk - chunk.mean(dtype=np.float64)
        return (without_hum(x, self.sample_rate) if self.remove_hum else x).astype(np.float32)

    def _forward(self, audios: np.ndarray, net: Network | None = None) -> np.ndarray:
        """[B, L] float32 -> [B, C, L] float64: one model pass per view (merged by mossep.ensemble), then the
        optional post-filter (mossep.postfilter). Each row is run at the training level (mossep.level) and the
        estimates returned at the row's own level. net: the noisy-room network (default: the model)."""
        if self.raw:
            run = lambda x: torch.from_numpy(self._run_model(x.to(self.device)))  # noqa: E731
            return np.stack([self.official(run, a) for a in np.asarray(audios, np.float32)]).astype(np.float64)
        audios, gains = to_model_level(audios, training_level_dbfs(self.num_speakers))
        x = torch.from_numpy(audios).to(self.device)
        net = net or Network(self.model, self.signs, self.wiener)
        views = [self._run_model(x if sign > 0 else -x, net.model) for sign in net.signs]  # merge_views fixes signs
        est = views[0] if len(views) == 1 else np.stack(
            [merge_views([v[b] for v in views], audios[b]) for b in range(len(audios))])
        if net.wiener:
            est = np.stack([post_filter(e, a, self.sample_rate) for e, a in zip(est, audios)])
        return est / gains[:, None, None]

    def _separate_chunks(self, chunks: list[np.ndarray], count: ChunkCount | None) -> list[np.ndarray]:
        """Each chunk [L] through the network it sounds like it needs (mossep.gate): [C, L] float64 each."""
        noisy = [self.noisy is not None and sounds_noisy(a, self.sample_rate, self.noisy_below_db) for a in chunks]
        if count is not None:
            count.noisy += sum(noisy)
            count.total += len(chunks)
        out: list[np.ndarray] = [np.empty(0)] * len(chunks)
        for which, net in ((False, None), (True, self.noisy)):
            idx = [i for i, n in enumerate(noisy) if n == which]
            if idx:
                forward = self._forward if net is None else (lambda a, net=net: self._forward(a, net))
                est = forward(np.stack([chunks[i] for i in idx]))
                if not np.all(np.isfinite(est)):  # never passed on: no output may hold NaN or infinity
                    raise MossepError("the model's output is NaN or infinite (a broken checkpoint?); nothing was "
                                      "written")
                for i, e in zip(idx, est):
                    if self.solo:  # one voice alone: its output takes the mixture, the others silence
                        e = reassign(e, chunks[i], self.sample_rate, lambda x: forward(x[None])[0])
                    out[i] = e
        return out

    def separate_stream(self, blocks: Iterable[np.ndarray], expected: int | None = None,
                        progress: Progress | None = None, name: str = "input",
                        count: ChunkCount | None = None) -> Iterator[np.ndarray]:
        """Separate a stream of mono blocks at the model rate; yields finished [C, t] float32 blocks.

        Holds about one chunk (times the batch size) of audio at a time. expected: total samples (for progress).
        count: adds how many chunks went to the noisy-room model, of how many.
        """
        sr, chunk, overlap = self.sample_rate, self.chunk, self.overlap
        hop = chunk - overlap
        ola = OverlapAdd(self.num_speakers, overlap, fit_level=not self.raw, track_speakers=self.track_speakers,
                         sample_rate=sr)
        total_s = expected / sr if expected else None
        buf, buf_start, n_seen, k = np.zeros(0, np.float32), 0, 0, 0
        pending: list[tuple[int, np.ndarray]] = []

        def run(batch: list[tuple[int, np.ndarray]], n_final: int | None = None) -> None:
            # each chunk without its mean and, with remove_hum, without mains hum (mossep.hum): neither is a
            # talker's (the network, trained on clean speech, lost 5 dB to an offset of -0.2 and 3.2 dB to hum
            # at -30 dBFS), and the outputs then carry none of them
            batch = [(s, self._clean(a)) for s, a in batch]
            try:
                est = self._separate_chunks([a for _, a in batch], count)
            except MossepError as e:
                raise MossepError(f"{name}: {e}") from None
            for (s, a), e in zip(batch, est):
                ola.add(s, e, a.astype(np.float64), first=s == 0, last=n_final is not None and s + len(a) == n_final)
            if progress is not None:
                progress(ola.end / sr, total_s)

        for block in blocks:
            buf = np.concatenate([buf, np.asarray(block, np.float32)])
            n_seen += len(block)
            while chunk and is_regular(k * hop, chunk, n_seen):
                s = k * hop
                pending.append((s, buf[s - buf_start: s - buf_start + chunk].copy()))
                k += 1
                if len(pending) >= self.batch_size:
                    run(pending)
                    pending = []
                    # every later chunk starts at or after `safe` (the next regular start, or the final chunk's)
                    safe = min(s + hop, max(s + 1, n_seen - chunk))
                    out = ola.pop(safe)
                    if out.shape[1]:
                        yield out
                    buf, buf_start = buf[safe - buf_start:], safe
        n = n_seen
        if n < self.config.min_samples:
            raise MossepError(f"{name}: too short ({n} samples at {sr} Hz; the model needs at least "
                              f"{self.config.min_samples})")
        rest = [(s, buf[s - buf_start: e - buf_start]) for s, e in plan_chunks(n, chunk, overlap)[k:]]
        batch = pending + rest
        for i in range(0, len(batch), self.batch_size):
            run(batch[i: i + self.batch_size], n_final=n)
        out = ola.pop(n)
        if out.shape[1]:
            yield out

    # -- arrays -------------------------------------------------------------------------------------------
    def separate(self, mix: np.ndarray, sample_rate: int, progress: Progress | None = None) -> np.ndarray:
        """mix [T] (mono) or [T, ch] (downmixed) at `sample_rate` -> float32 [C, T] at `sample_rate`.

        Integer arrays are read as PCM (full scale = 1.0).
        Each chunk's estimates are scaled so that their sum best matches the mixture; no peak limiting.
        """
        mix = np.asarray(mix)
        if np.issubdtype(mix.dtype, np.integer):  # PCM samples: full scale -> 1.0
            mix = mix / float(np.iinfo(mix.dtype).max + 1)
        if mix.ndim == 2 and mix.shape[1] > mix.shape[0]:
            raise MossepError(f"mixture has shape {mix.shape}, more channels than samples: separate() takes "
                              "[T] or [T, channels]; for a [channels, T] array pass mix.T")
        if mix.ndim == 2 and mix.shape[1] == 0:
            raise MossepError(f"mixture has shape {mix.shape}: no channels")
        if mix.ndim == 2:
            mix = mix.mean(axis=1)
        if mix.ndim != 1:
            raise MossepError(f"mixture must be [T] or [T, channels], got shape {mix.shape}")
        if mix.size == 0:
            raise MossepError("mixture contains no samples")
        sample_rate = whole_rate(sample_rate, "sample rate")
        mix = mix.astype(np.float32)
        check_finite(mix, "mixture")
        sr_in, sr = sample_rate, self.sample_rate
        n_model = resampled_length(len(mix), sr_in, sr)
        blocks = resample_blocks([mix], sr_in, sr, expected=n_model)
        back = StreamResampler(sr, sr_in, self.num_speakers, expected=len(mix))
        parts = [back.process(est.T) for est in self.separate_stream(blocks, n_model, progress, "mixture")]
        parts.append(back.flush())
        return np.ascontiguousarray(np.concatenate(parts).T, dtype=np.float32)

    # -- files --------------------------------------------------------------------------------------------
    def _check_input(self, inp: InputAudio) -> int:
        n_model = resampled_length(inp.frames, inp.sample_rate, self.sample_rate)
        if n_model < self.config.min_samples:
            raise MossepError(f"{inp.name}: too short ({inp.frames} samples at {inp.sample_rate} Hz; the model "
                              f"needs at least {self.config.min_samples} samples at {self.sample_rate} Hz)")
        return n_model

    def _open(self, input_path: str | Path, stdin: BinaryIO | None, channel: int | None) -> InputAudio:
        """Open and check an input (readable, long enough, has `channel`)."""
        inp = open_input(input_path, stdin)
        self._check_input(inp)
        check_channel(inp.name, inp.channels, channel)
        return inp

    @staticmethod
    def _output_rate(inp: InputAudio, output_rate: int | None) -> tuple[int, int]:
        """(output rate, output length): the input's rate unless another is asked for."""
        out_rate = inp.sample_rate if output_rate is None else whole_rate(output_rate, "output sample rate")
        return out_rate, resampled_length(inp.frames, inp.sample_rate, out_rate)

    def _pump(self, inp: InputAudio, sink: SpeakerSink, channel: int | None, out_rate: int,
              progress: Progress | None) -> SpeechReport:
        """Separate `inp` into `sink`; returns which outputs carry speech (mossep.solo.SpeechMeter) and how many
        chunks the noisy-room model separated."""
        sr = self.sample_rate
        n_model = self._check_input(inp)
        blocks = resample_blocks(read_mono_blocks(inp, channel), inp.sample_rate, sr, expected=n_model)
        back = StreamResampler(sr, out_rate, self.num_speakers, expected=sink.expected)
        meter = SpeechMeter(self.num_speakers, out_rate)
        count = ChunkCount() if self.noisy is not None else None
        for est in self.separate_stream(blocks, n_model, progress, inp.name, count):
            meter.add(est := back.process(est.T).T)
            sink.write(est)
        meter.add(est := back.flush().T)
        sink.write(est)
        report = meter.report()
        return report if count is None else replace(report, noisy_chunks=(count.noisy, count.total))

    def output_paths(self, input_path: str | Path, out_dir: str | Path, filename: str = DEFAULT_FILENAME,
                     fmt: str = "wav") -> list[Path]:
        stem, ext = ("stdin", "") if str(input_path) == "-" else (Path(input_path).stem, Path(input_path).suffix[1:])
        return [Path(out_dir) / n for n in output_names(filename, stem, self.num_speakers, fmt, ext)]

    def separate_file(self, input_path: str | Path, out_dir: str | Path, filename: str = DEFAULT_FILENAME,
                      fmt: str = "wav", subtype: str = "PCM_16", overwrite: bool = False, channel: int | None = None,
                      output_rate: int | None = None, progress: Progress | None = None,
                      note: Note | None = None, stdin: BinaryIO | None = None) -> OutputFiles:
        """Separate one file ("-" = stdin) into one file per speaker in `out_dir`; returns their paths (a list
        whose .speech says which outputs carry speech, see OutputFiles).

        channel: 1-based channel to use instead of the downmix. output_rate: default the input's rate.
        note: receives messages such as peak scaling (default: logged as warnings).
        Outputs appear all together at the end, or not at all.
        """
        check_output_format(fmt, subtype)
        paths = self.output_paths(input_path, out_dir, filename, fmt)  # distinct names (output_names checks)
        for p in paths:  # a folder in the way or a name too long fails now, not after the work
            check_output_file(p)
        inp = self._open(input_path, stdin, channel)
        if not overwrite:
            existing = existing_outputs(paths)  # not those a killed run left of this set
            if existing:
                raise MossepError(f"{existing[0]}: already exists (use --overwrite)")
        if str(input_path) != "-":
            src = Path(input_path).resolve()
            if any(p.resolve() == src for p in paths):
                raise MossepError(f"{input_path}: an output would overwrite the input")
        out_rate, expected = self._output_rate(inp, output_rate)
        parents = sorted({p.parent for p in paths})
        with removing_new_dirs_on_error(parents):  # a failed run leaves no empty output folders either
            for parent in parents:
                check_writable_dir(parent)
                remove_stale_temps(parent, [p.name for p in paths if p.parent == parent])  # a killed run's
            with SpeakerSink(self.num_speakers, paths[0].parent, expected, limit_peak=not self.raw) as sink:
                speech = self._pump(inp, sink, channel, out_rate, progress)
                sink.commit_files(paths, out_rate, fmt, subtype, overwrite, inp.name, note or log.warning)
        return OutputFiles(paths, speech)

    def separate_to_stream(self, input_path: str | Path, stream: BinaryIO, subtype: str = "PCM_16",
                           channel: int | None = None, output_rate: int | None = None,
                           progress: Progress | None = None, note: Note | None = None,
                           stdin: BinaryIO | None = None) -> SpeechReport:
        """Separate one file ("-" = stdin) into a single WAV on `stream` whose channel k is speaker k; returns
        which channels carry speech."""
        check_output_format("wav", subtype)
        inp = self._open(input_path, stdin, channel)
        out_rate, expected = self._output_rate(inp, output_rate)
        with SpeakerSink(self.num_speakers, None, expected, limit_peak=not self.raw) as sink:
            speech = self._pump(inp, sink, channel, out_rate, progress)
            sink.commit_stream(stream, out_rate, subtype, inp.name, note or log.warning)
        return speech
