"""`mossep batch --ray`: the driver's side on the terminal (progress in audio hours, the per-file lines, the
summary of a local batch plus per-worker throughput), over mossep.cluster."""
from __future__ import annotations

import time
from pathlib import Path

from .. import batchjob
from ..audio import check_writable_dir
from ..cluster import Cluster, audio_seconds
from ..fsutil import remove_stale_temps, removing_new_dirs_on_error
from ..separator import output_names
from .report import JsonReport, speech_of_files
from .separate import Reporter, finish_batch, report_outcome


def batch_on_ray(rep: Reporter, report: JsonReport, files: list[Path], input_dir: Path, output_dir: Path,
                 overwrite: bool, how: dict, separator_kwargs: dict, address: str, workers: int | None,
                 cpus_per_worker: float, gpus_per_worker: float) -> None:
    """Run the batch on Ray workers with the rules of a local batch (mossep.batchjob)."""
    cluster = Cluster(address, separator_kwargs, workers, cpus_per_worker, gpus_per_worker, most=len(files))
    try:
        output_names(how["filename"], "name", cluster.num_speakers, how["fmt"], "wav")
        with removing_new_dirs_on_error([output_dir]):
            check_writable_dir(output_dir)
            remove_stale_temps(output_dir)  # claim files a killed run left (fsutil.claimed)
            for n in cluster.notes:
                rep.note(f"model: {n}")
            rep.note(f"ray: {len(cluster.workers)} workers")
            _run(cluster, rep, report, files, input_dir, output_dir, overwrite, how)
    finally:
        cluster.close()


def _run(cluster: Cluster, rep: Reporter, report: JsonReport, files: list[Path], input_dir: Path, output_dir: Path,
         overwrite: bool, how: dict) -> None:
    start = time.monotonic()
    outcomes: list[batchjob.Outcome] = []
    todo = []
    for job in cluster.plan(files, input_dir, output_dir, how["filename"], how["fmt"]):
        if batchjob.finished(job, overwrite):  # skipped here, without a round trip to a worker
            outcome = batchjob.skipped(job, speech_of_files)
            outcomes.append(outcome)
            report_outcome(rep, report, outcome)
        else:
            todo.append(job)
    seconds = {j.input: audio_seconds(j.input) for j in todo}
    total = sum(seconds.values())
    done = 0.0
    with rep.progress:
        bar = rep.progress.add_task("audio", total=max(total, 1e-9), amount=_hours(0, total))

        def on_outcome(outcome: batchjob.Outcome, seconds: float) -> None:
            nonlocal done
            done += seconds
            outcomes.append(outcome)
            report_outcome(rep, report, outcome)
            rep.progress.update(bar, completed=done, amount=_hours(done, total))

        cluster.run(todo, seconds, output_dir, overwrite, how, report.path is not None, on_outcome, rep.note)
    wall = time.monotonic() - start
    for k, stats in enumerate(cluster.stats, 1):
        rep.console.print(f"mossep: ray: {stats.line(k)}", markup=False, highlight=False, soft_wrap=True)
    audio = sum(s.audio_seconds for s in cluster.stats)
    rep.console.print(f"mossep: ray: {len(cluster.workers)} workers: {audio / 3600:.3f} h of audio in {wall:.1f} s, "
                      f"{audio / wall if wall else 0:.1f} audio hours per hour", markup=False, highlight=False, soft_wrap=True)
    finish_batch(rep, report, len(files), outcomes)


def _hours(done: float, total: float) -> str:
    return f"{done / 3600:.3f}/{total / 3600:.3f} h"
