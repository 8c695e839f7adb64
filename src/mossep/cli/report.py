"""Which outputs carry speech: the per-file summary line and the `--json FILE` report of `separate` and `batch`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

import soundfile as sf
import typer

from ..fsutil import atomic_path, check_new_file
from ..solo import SpeechMeter, SpeechReport

JSON = typer.Option(None, "--json", help="Also write a JSON report: for every input its outputs and which of them "
                    "carry speech (seconds of speech per output).")
SOLO_OPTION = typer.Option(None, "--solo/--no-solo", help="Where one voice speaks alone, give its output the whole "
                           "mixture and the other outputs silence instead of a residue of that voice (mossep.solo). "
                           "Default: on for mossep's own checkpoints, off for official ones. Off under --raw.")
BLOCK_FRAMES = 1 << 16


def describe(speech: SpeechReport, names: Sequence[str]) -> str:
    """One line: which outputs carry speech, e.g. 'speech in a_spk1.wav; silent: a_spk2.wav'."""
    live = [n for n, s in zip(names, speech.speech) if s]
    quiet = [n for n, s in zip(names, speech.speech) if not s]
    noisy = speech.noisy_chunks
    how = f"; noisy-room model for {noisy[0]} of {noisy[1]} chunks" if noisy and noisy[0] else ""
    if not live:
        return "no speech found in any output" + how
    return "speech in " + ", ".join(live) + ("; silent: " + ", ".join(quiet) if quiet else "") + how


NOISY_HINT = ("parts of the input sounded noisy or reverberant and went to the bundled noisy-room model, which "
              "separates such recordings only partly; where the network can be reached, --model "
              "mossformer2-whamr-2spk (the official MossFormer2 trained on noisy, reverberant WHAMR! mixtures, "
              "downloaded on first use) is made for them")


def noisy_hint(reports: Iterable[SpeechReport | None]) -> str | None:
    """NOISY_HINT when any of the files had a chunk separated by the noisy-room model, else None."""
    return NOISY_HINT if any(r is not None and r.noisy_chunks and r.noisy_chunks[0] for r in reports) else None


def speech_of_files(paths: Sequence[Path]) -> SpeechReport | None:
    """Which of the finished output files (one per speaker, same rate) carry speech, read in blocks; None when
    they cannot be read (the report then says nothing about them)."""
    try:
        infos = [sf.info(str(p)) for p in paths]
        meter = SpeechMeter(len(paths), infos[0].samplerate)
        readers = [sf.blocks(str(p), blocksize=BLOCK_FRAMES, dtype="float64", always_2d=True) for p in paths]
        for blocks in zip(*readers):
            n = min(len(b) for b in blocks)
            meter.add([b[:n].mean(axis=1) for b in blocks])
    except Exception:
        return None
    return meter.report()


class JsonReport:
    """The --json report: one entry per input, written atomically at the end (nothing when path is None)."""

    def __init__(self, path: Optional[Path], overwrite: bool):
        self.path, self.overwrite = path, overwrite
        self.files: list[dict] = []
        if path is not None:
            check_new_file(path, overwrite)  # before any work

    def add(self, inp: str | Path, outputs: Sequence[str | Path] | None, speech: SpeechReport | None,
            status: str = "separated", error: str | None = None) -> None:
        entry: dict = {"input": str(inp), "status": status}
        if outputs is not None:
            entry["outputs"] = [str(p) for p in outputs]
        if speech is not None:
            entry["speech"] = list(speech.speech)
            entry["speech_seconds"] = list(speech.seconds)
            if speech.noisy_chunks is not None:
                entry["noisy_chunks"] = list(speech.noisy_chunks)
        if error is not None:
            entry["error"] = error
        self.files.append(entry)

    def write(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path, overwrite=self.overwrite) as tmp:
            tmp.write_text(json.dumps({"files": self.files}, indent=2) + "\n")
