"""One file of `mossep batch`: the job that the local loop (cli.separate) and the Ray workers (mossep.cluster)
both run, so that both follow the same rules: outputs mirror the input tree, a file whose outputs all exist is
skipped (resume), a file another live run holds is left to it (fsutil.claimed), and a failure stays with its
file (an Outcome, never an exception)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .errors import MossepError, reason
from .fsutil import claimed
from .solo import SpeechReport

Progress = Callable[[float, Optional[float]], None]


@dataclass
class Job:
    """What to do with one input: its output folder and paths, or why it cannot be done (clash)."""
    input: Path
    target: Path
    paths: list[Path]
    clash: str | None = None


@dataclass
class Outcome:
    """What became of one input. status: separated, skipped (outputs exist), elsewhere (another run holds it)
    or failed. error: the cause for the --json report; message: the line for stderr; notes: what the
    separation said (e.g. a level lowered to avoid clipping); busy_seconds: time spent on it."""
    input: Path
    status: str
    outputs: list[Path] | None = None
    speech: SpeechReport | None = None
    error: str | None = None
    message: str | None = None
    notes: list[str] = field(default_factory=list)
    busy_seconds: float = 0.0


def plan(sep, files: list[Path], input_dir: Path, output_dir: Path, filename: str, fmt: str) -> list[Job]:
    """A Job per file, in order: outputs mirror the tree of `input_dir` under `output_dir`; a file whose output
    names were already taken by an earlier file gets a clash instead (it fails alone)."""
    owners: dict[Path, Path] = {}
    jobs = []
    for f in files:
        target = output_dir / f.relative_to(input_dir).parent
        paths = sep.output_paths(f, target, filename, fmt)
        clash = next((owners[p] for p in paths if p in owners), None)
        if clash is not None:
            jobs.append(Job(f, target, paths, f"{f}: its outputs have the same names as those of {clash} "
                                              "(add {ext} to --filename)"))
            continue
        owners.update({p: f for p in paths})
        jobs.append(Job(f, target, paths))
    return jobs


def finished(job: Job, overwrite: bool) -> bool:
    """Whether the job is already done: every output exists (and --overwrite is not given)."""
    return not overwrite and job.clash is None and all(p.exists() for p in job.paths)


def skipped(job: Job, speech_of_files: Callable | None = None) -> Outcome:
    """The Outcome of a finished job; `speech_of_files` reads which outputs carry speech (for the report)."""
    return Outcome(job.input, "skipped", job.paths, speech_of_files(job.paths) if speech_of_files else None)


def run_job(sep, job: Job, output_dir: Path, overwrite: bool, how: dict, progress: Progress | None = None,
            note: Callable[[str], None] | None = None, speech_of_files: Callable | None = None) -> Outcome:
    """Do one job with the Separator `sep`: skip it when its outputs exist, leave it to another run that holds
    its claim, else separate it (`how`: the keyword arguments of Separator.separate_file). Never raises for a
    failure of this file (except BaseException: a signal stops the run)."""
    start = time.monotonic()
    notes: list[str] = []

    def say(message: str) -> None:
        notes.append(message)
        if note is not None:
            note(message)

    try:
        if job.clash is not None:
            raise MossepError(job.clash)
        if finished(job, overwrite):
            return skipped(job, speech_of_files)
        with claimed(output_dir, str(job.paths[0].relative_to(output_dir))) as mine:
            if not mine:
                return Outcome(job.input, "elsewhere", job.paths)
            if finished(job, overwrite):  # finished by another run meanwhile
                return skipped(job, speech_of_files)
            out = sep.separate_file(job.input, job.target, overwrite=overwrite, progress=progress, note=say, **how)
            speech = getattr(out, "report", out.speech)  # OutputFiles' SpeechReport (.report in newer trees)
            return Outcome(job.input, "separated", list(out), speech, notes=notes,
                           busy_seconds=time.monotonic() - start)
    except MossepError as e:
        return Outcome(job.input, "failed", error=str(e), message=str(e), notes=notes,
                       busy_seconds=time.monotonic() - start)
    except Exception as e:  # a model or I/O failure on one file must not stop the batch
        text = reason(e)
        cause = type(e).__name__ + ("" if text == type(e).__name__ else f": {text}")
        return Outcome(job.input, "failed", error=cause, message=f"{job.input}: {cause}", notes=notes,
                       busy_seconds=time.monotonic() - start)


def summary(total: int, outcomes: list[Outcome]) -> str:
    """The batch summary line (without the 'mossep: batch: ' prefix)."""
    count = {s: sum(1 for o in outcomes if o.status == s) for s in ("separated", "skipped", "elsewhere", "failed")}
    text = f"{total} files: {count['separated']} separated, {count['skipped']} skipped (outputs exist), "
    if count["elsewhere"]:
        text += f"{count['elsewhere']} being separated by another run, "
    text += f"{count['failed']} failed"
    one = sum(1 for o in outcomes if o.speech is not None and sum(o.speech.speech) == 1)
    if one:
        text += f"; {one} with speech in one output only"
    return text
