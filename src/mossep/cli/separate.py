"""`mossep separate` and `mossep batch`: thin layers over mossep.separator.Separator."""
from __future__ import annotations

import contextlib
import enum
import os
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import batchjob
from ..audio import STDIN, check_output_format, check_writable_dir, open_input
from ..checkpoints.common import ConversionNote
from ..errors import MossepError
from ..fsutil import existing_outputs, remove_stale_temps, removing_new_dirs_on_error
from ..separator import DEFAULT_FILENAME, Separator, output_names
from ..tracking import TRACK_SPEAKERS
from . import options
from .report import JSON, SOLO_OPTION, JsonReport, describe, noisy_hint, speech_of_files
from .app import app

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf",
                    ".w64", ".rf64")

# Options shared by both commands (those shared with other commands too are in .options)
_FILENAME = typer.Option(DEFAULT_FILENAME, "--filename", help="Output name template: {stem} = input name without "
                         "extension, {ext} = its extension, {k} = speaker number (1, 2, ...).")


class Format(str, enum.Enum):
    wav = "wav"
    flac = "flac"


class Subtype(str, enum.Enum):
    PCM_16 = "PCM_16"
    PCM_24 = "PCM_24"
    FLOAT = "FLOAT"


_FORMAT = typer.Option(Format.wav, "--format", case_sensitive=False, help="Output file format.")
_SUBTYPE = typer.Option(Subtype.PCM_16, "--subtype", case_sensitive=False,
                        help="Sample format (flac: PCM_16 or PCM_24).")
_RATE = typer.Option(None, "--sample-rate", help="Output sample rate. Default: the input's.")
_CHANNEL = typer.Option(None, "--channel", help="Use this channel (1 = first) instead of the downmix.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing outputs.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or notes (errors only).")
_TRACK = typer.Option(None, "--track/--no-track", help="Long inputs: also keep each talker on its output across "
                      "chunks by voice profiles, so that a talker swap inside one chunk is undone at the next "
                      f"(mossep.tracking). Default: {'on' if TRACK_SPEAKERS else 'off'}.")
_RAW = typer.Option(False, "--raw", help="The official output, exactly: what the checkpoint format's own "
                    "inference pipeline returns (mossep.official_pipelines), with nothing mossep adds (no DC or hum "
                    "removal, extra pass, post-filter, chunking or level fit). The whole input goes through the "
                    "model at once.")
_DEHUM = typer.Option(True, "--dehum/--no-dehum", help="Take a steady 50/60 Hz mains hum out of each chunk before "
                      "separating it (mossep.hum; nothing changes where none is found).")


class Reporter:
    """Progress bars and notes on stderr (nothing at all with quiet)."""

    def __init__(self, quiet: bool, noisy_hint: bool = False):
        self.quiet = quiet
        self.noisy_hint = noisy_hint  # point to the official noisy-room model when chunks went to the bundled one
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=True,
                                 disable=quiet or not self.console.is_terminal)  # no bars in logs or pipes

    def note(self, message: str) -> None:
        if not self.quiet:  # one line however long (a wrapped path cannot be grepped from a log)
            self.console.print(f"mossep: {message}", markup=False, highlight=False, soft_wrap=True)

    def error(self, message: str) -> None:
        self.console.print(f"mossep: error: {message}", markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def file_task(self, name: str) -> Iterator:
        task = self.progress.add_task(name, total=None, amount="")

        def update(done: float, total: float | None) -> None:
            amount = f"{done:.0f}/{total:.0f} s" if total else f"{done:.0f} s"
            self.progress.update(task, completed=done, total=total, amount=amount)

        try:
            yield update
        finally:
            self.progress.remove_task(task)


def _value(v: enum.Enum | str) -> str:
    return v.value if isinstance(v, enum.Enum) else str(v)


def _load(model, model_rate, device, threads, fast, chunk, overlap, passes, wiener, track, dehum,
          raw=False, solo=None, backend="torch", noisy_model=None) -> Separator:
    return Separator(model=model, device=device, chunk_seconds=chunk, overlap_seconds=overlap, threads=threads,
                     fast=fast, model_rate=model_rate, passes=passes, wiener=wiener, track_speakers=track,
                     remove_hum=dehum, raw=raw, solo=solo, backend=backend, noisy_model=options.noisy_choice(noisy_model))


@app.command()
def separate(
    inputs: List[str] = typer.Argument(..., metavar="INPUT...", help="Audio files (any format libsndfile reads); "
                                       "- reads a WAV/FLAC stream from stdin."),
    output_dir: Optional[Path] = typer.Option(None, "-o", "--output-dir", help="Folder for the outputs."),
    stdout: bool = typer.Option(False, "--stdout", help="Write one WAV to stdout, channel k = speaker k."),
    filename: str = _FILENAME, fmt: Format = _FORMAT, subtype: Subtype = _SUBTYPE, sample_rate: Optional[int] = _RATE,
    channel: Optional[int] = _CHANNEL, chunk_seconds: Optional[float] = options.CHUNK,
    overlap_seconds: Optional[float] = options.OVERLAP, overwrite: bool = _OVERWRITE,
    model: Optional[Path] = options.MODEL, model_rate: Optional[int] = options.MODEL_RATE,
    device: str = options.DEVICE, threads: Optional[int] = options.THREADS, fast: bool = options.FAST,
    passes: Optional[int] = options.PASSES, wiener: Optional[bool] = options.WIENER,
    track: Optional[bool] = _TRACK, dehum: bool = _DEHUM, raw: bool = _RAW, quiet: bool = _QUIET,
    solo: Optional[bool] = SOLO_OPTION, json_path: Optional[Path] = JSON, backend: str = options.BACKEND,
    noisy_model: Optional[str] = options.NOISY_MODEL,
) -> None:
    """Separate each INPUT into one file per speaker ({stem}_spk1.wav, {stem}_spk2.wav, ...)."""
    fmt, subtype = _value(fmt), _value(subtype)
    if stdout and output_dir is not None:
        raise MossepError("give either -o OUTDIR or --stdout, not both")
    if not stdout and output_dir is None:
        raise MossepError("no output: give -o OUTDIR (or --stdout)")
    if stdout and len(inputs) != 1:
        raise MossepError("--stdout takes exactly one input")
    if stdout and fmt.lower() != "wav":
        raise MossepError("--stdout writes WAV; --format does not apply")
    if inputs.count(STDIN) > 1:
        raise MossepError("- (stdin) can be given only once")
    if stdout and sys.stdout is None:  # started with stdout closed (`>&-`)
        raise MossepError("--stdout: standard output is closed")
    report = JsonReport(json_path, overwrite)
    rep = Reporter(quiet, noisy_hint=noisy_model is None)  # a model the user named is the user's choice
    sep = _load(model, model_rate, device, threads, fast, chunk_seconds, overlap_seconds, passes, wiener, track, dehum, raw,
                solo, backend, noisy_model)
    # check every input and every output before writing anything
    owners: dict[Path, str] = {}
    for inp in inputs:
        if inp != STDIN:
            open_input(inp)
        if output_dir is None:
            continue
        paths = sep.output_paths(inp, output_dir, filename, fmt)
        existing = [] if overwrite else existing_outputs(paths)  # a set a killed run left incomplete is redone
        for p in paths:
            if p in owners and owners[p] == inp:
                raise MossepError(f"{inp}: given twice")
            if p in owners:
                raise MossepError(f"{inp}: would write {p}, as {owners[p]} does (add {{ext}} to --filename)")
            owners[p] = inp
            if p in existing:
                raise MossepError(f"{p}: already exists (use --overwrite)")
    _conversion_notes(sep, rep)
    speeches: list = []
    with rep.progress:
        for inp in inputs:
            with rep.file_task(Path(inp).name if inp != STDIN else "<stdin>") as update:
                if stdout:
                    with _stdout_dropped_on_error():
                        speech = sep.separate_to_stream(inp, sys.stdout.buffer, subtype=subtype, channel=channel,
                                                        output_rate=sample_rate, progress=update, note=rep.note)
                    names = [f"channel {k}" for k in range(1, sep.num_speakers + 1)]
                    rep.note(f"{inp} -> stdout: {describe(speech, names)}")
                    report.add(inp, None, speech)
                    speeches.append(speech)
                else:
                    paths = sep.separate_file(inp, output_dir, filename=filename, fmt=fmt, subtype=subtype,
                                              overwrite=overwrite, channel=channel, output_rate=sample_rate,
                                              progress=update, note=rep.note)
                    rep.note(f"{inp} -> " + ", ".join(str(p) for p in paths) + ": "
                             + describe(paths.report, [p.name for p in paths]))
                    report.add(inp, paths, paths.report)
                    speeches.append(paths.report)
    report.write()
    if rep.noisy_hint and (hint := noisy_hint(speeches)):
        rep.note(hint)


def _conversion_notes(sep: Separator, rep: Reporter) -> None:
    """Say that the model's weights were converted from another float type (once the options and paths are
    checked, so that an error stays the only line)."""
    for note in sep.loaded.notes:
        if isinstance(note, ConversionNote):
            rep.note(f"model: {note}")


@contextlib.contextmanager
def _stdout_dropped_on_error() -> Iterator[None]:
    """When writing to stdout fails (a full disk, a closed pipe), point its descriptor at /dev/null, so that
    the interpreter's last flush of what is still buffered does not print a second error."""
    try:
        yield
    except MossepError:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        raise


def check_patterns(patterns: list[str]) -> None:
    """--glob patterns must stay inside DIR: relative, and without a `..` part."""
    for pat in patterns:
        parts = Path(pat).parts
        if not pat or Path(pat).is_absolute() or ".." in parts:
            raise MossepError(f"--glob {pat!r}: patterns are matched inside DIR, so they cannot be absolute or "
                              "contain '..' (e.g. '*.flac', 'day1/*.wav')")


def find_audio(root: Path, patterns: list[str], exclude: Path | None) -> list[Path]:
    """Files under `root` (recursively) matching any glob pattern (relative, see check_patterns), or with a
    common audio extension."""
    check_patterns(patterns)
    if patterns:
        found = {p for pat in patterns for p in root.rglob(pat)}
    else:
        found = {p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS}
    out = []
    for p in found:
        if not p.is_file() or p.name.startswith(".") or p.name.endswith(".part"):
            continue
        if exclude is not None and exclude in p.resolve().parents:
            continue
        out.append(p)
    return sorted(out)


@app.command()
def batch(
    input_dir: Path = typer.Argument(..., metavar="DIR", help="Folder searched recursively for audio files."),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Outputs mirror the input tree here."),
    glob: Optional[List[str]] = typer.Option(None, "--glob", help="File pattern (repeatable), e.g. '*.flac'. "
                                             "Default: common audio extensions."),
    filename: str = _FILENAME, fmt: Format = _FORMAT, subtype: Subtype = _SUBTYPE, sample_rate: Optional[int] = _RATE,
    channel: Optional[int] = _CHANNEL, chunk_seconds: Optional[float] = options.CHUNK,
    overlap_seconds: Optional[float] = options.OVERLAP, overwrite: bool = _OVERWRITE,
    model: Optional[Path] = options.MODEL, model_rate: Optional[int] = options.MODEL_RATE,
    device: str = options.DEVICE, threads: Optional[int] = options.THREADS, fast: bool = options.FAST,
    passes: Optional[int] = options.PASSES, wiener: Optional[bool] = options.WIENER,
    track: Optional[bool] = _TRACK, dehum: bool = _DEHUM, raw: bool = _RAW, quiet: bool = _QUIET,
    solo: Optional[bool] = SOLO_OPTION, json_path: Optional[Path] = JSON, backend: str = options.BACKEND,
    noisy_model: Optional[str] = options.NOISY_MODEL,
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]",
                                      help="Spread the files over a Ray cluster (mossep.cluster): `auto` or "
                                      "HOST:PORT joins one ($RAY_ADDRESS too); no value starts Ray on this "
                                      "machine. Paths must be on storage every node sees."),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", help="Ray workers (each loads the model "
                                              "once). Default: as many as the cluster's CPUs/GPUs allow."),
    ray_cpus: float = typer.Option(1.0, "--ray-cpus-per-worker", help="CPUs per Ray worker (its torch threads)."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus-per-worker", help="GPUs per Ray worker."),
) -> None:
    """Separate every audio file under DIR; files whose outputs all exist are skipped (resume)."""
    fmt, subtype = _value(fmt), _value(subtype)
    # options that would fail every file fail once, before anything is read or written
    check_output_format(fmt, subtype)
    check_patterns(glob or [])
    output_names(filename, "name", 1, fmt, "wav")
    if sample_rate is not None and sample_rate <= 0:
        raise MossepError(f"output sample rate must be positive, got {sample_rate}")
    if output_dir.exists() and not output_dir.is_dir():
        raise MossepError(f"{output_dir}: output folder is a file, not a directory")
    if not input_dir.exists():
        raise MossepError(f"{input_dir}: no such directory")
    if not input_dir.is_dir():
        raise MossepError(f"{input_dir}: not a directory (use `mossep separate` for single files)")
    files = find_audio(input_dir, glob or [], output_dir.resolve())
    if not files:
        raise MossepError(f"{input_dir}: no audio files found" + (f" matching {', '.join(glob)}" if glob else ""))
    if ray is None and (ray_workers is not None or ray_cpus != 1.0 or ray_gpus != 0.0):
        raise MossepError("--ray-workers, --ray-cpus-per-worker and --ray-gpus-per-worker need --ray")
    report = JsonReport(json_path, overwrite)
    rep = Reporter(quiet, noisy_hint=noisy_model is None)
    if ray is not None:
        from .cluster import batch_on_ray
        how = dict(filename=filename, fmt=fmt, subtype=subtype, channel=channel, output_rate=sample_rate)
        separator_kwargs = dict(model=model, device=device, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                                threads=threads, fast=fast, model_rate=model_rate, passes=passes, wiener=wiener,
                                track_speakers=track, remove_hum=dehum, raw=raw, solo=solo,
                                backend=backend, noisy_model=options.noisy_choice(noisy_model))
        return batch_on_ray(rep, report, files, input_dir, output_dir, overwrite, how, separator_kwargs,
                            ray, ray_workers, ray_cpus, ray_gpus)
    sep = _load(model, model_rate, device, threads, fast, chunk_seconds, overlap_seconds, passes, wiener, track, dehum, raw,
                solo, backend, noisy_model)
    output_names(filename, "name", sep.num_speakers, fmt, "wav")  # e.g. a template giving two talkers one name
    with removing_new_dirs_on_error([output_dir]):  # every file failed: no empty output folder is left
        check_writable_dir(output_dir)  # once the model loaded: a bad --model leaves no empty output folder
        remove_stale_temps(output_dir)  # claim files a killed run left (fsutil.claimed)
        _conversion_notes(sep, rep)
        _batch_files(sep, rep, files, input_dir, output_dir, overwrite,
                     dict(filename=filename, fmt=fmt, subtype=subtype, channel=channel, output_rate=sample_rate),
                     report)


def _batch_files(sep: Separator, rep: Reporter, files: list[Path], input_dir: Path, output_dir: Path,
                 overwrite: bool, how: dict, report: JsonReport) -> None:
    """Run each file's job (mossep.batchjob: skipped when its outputs exist, left to another run that holds it,
    else separated); say which outputs carry speech (the note and `report`; for skipped files read from their
    outputs); print the summary, MossepError if any file failed."""
    outcomes = []
    with rep.progress:
        overall = rep.progress.add_task("files", total=len(files), amount=f"{len(files)} files")
        for job in batchjob.plan(sep, files, input_dir, output_dir, how["filename"], how["fmt"]):
            with rep.file_task(job.input.name) as update:
                outcome = batchjob.run_job(sep, job, output_dir, overwrite, how, progress=update, note=rep.note,
                                           speech_of_files=speech_of_files)
            outcomes.append(outcome)
            report_outcome(rep, report, outcome, notes=False)
            rep.progress.advance(overall)
    finish_batch(rep, report, len(files), outcomes)


def report_outcome(rep: Reporter, report: JsonReport, outcome: batchjob.Outcome, notes: bool = True) -> None:
    """Say what became of one file (its notes too, unless already said) and add it to the --json report."""
    if notes:
        for n in outcome.notes:
            rep.note(n)
    if outcome.status == "separated":
        rep.note(f"{outcome.input}: " + describe(outcome.speech, [p.name for p in outcome.outputs]))
    elif outcome.status == "skipped" and outcome.speech is not None:  # read back from its existing outputs
        rep.note(f"{outcome.input}: outputs exist, skipped; " + describe(outcome.speech,
                                                                         [p.name for p in outcome.outputs]))
    elif outcome.status == "failed":
        rep.error(outcome.message)
    report.add(outcome.input, outcome.outputs, outcome.speech, outcome.status, outcome.error)


def finish_batch(rep: Reporter, report: JsonReport, total: int, outcomes: list[batchjob.Outcome]) -> None:
    """Write the report, print the summary; MossepError if any file failed."""
    report.write()
    if rep.noisy_hint and (hint := noisy_hint(o.speech for o in outcomes if o.status == "separated")):
        rep.note(hint)
    rep.console.print(f"mossep: batch: {batchjob.summary(total, outcomes)}", markup=False, highlight=False,
                      soft_wrap=True)  # one line, however long
    failed = sum(1 for o in outcomes if o.status == "failed")
    if failed:
        raise MossepError(f"{failed} of {total} files failed")
