"""`mossep batch --ray`: the same batch jobs (mossep.batchjob) spread over a Ray cluster.

Ray does the scheduling: each worker is a Ray actor holding one loaded Separator, and the driver hands a free
worker the next file, one at a time, so a long file holds up only its own worker. A worker that dies on a file
(its process killed, its node lost) is restarted by Ray, and the file goes back to the queue for another
worker after fsutil.STALE_SECONDS (so that the dead worker's temporary files are recognised as leftovers and
removed). Files are claimed through the shared output folder (fsutil.claimed) and written by atomic renames,
as in a local batch, so no partial output is left and no file is done twice; a killed driver takes its
workers with it, and a rerun finishes the rest. Ray is an optional extra: `pip install 'mossep[ray]'`.
"""
from __future__ import annotations

import collections
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import batchjob
from .errors import MossepError, reason
from .fsutil import STALE_SECONDS

INSTALL = "--ray needs Ray, an optional extra: pip install 'mossep[ray]'"
MAX_TRIES = 3  # a file whose worker dies this many times fails alone (e.g. it takes more memory than a node has)


def _ray():
    try:
        import ray
    except ImportError:
        raise MossepError(INSTALL) from None
    return ray


class SeparatorWorker:
    """A Ray actor's state: one Separator, loaded once, that runs batch jobs one at a time. A model that fails
    to load is reported by info() rather than raised, so that the driver prints one line."""

    def __init__(self, separator_kwargs: dict):
        from .separator import Separator
        self.sep, self.error = None, None
        try:
            self.sep = Separator(**separator_kwargs)
        except MossepError as e:
            self.error = str(e)
        except Exception as e:
            self.error = f"{type(e).__name__}: {reason(e)}"

    def info(self) -> dict:
        from .checkpoints.common import ConversionNote
        if self.sep is None:
            return {"error": self.error}
        return {"error": None, "num_speakers": self.sep.num_speakers, "pid": os.getpid(),
                "node": socket.gethostname(),
                "notes": [str(n) for n in self.sep.loaded.notes if isinstance(n, ConversionNote)]}

    def plan(self, files, input_dir, output_dir, filename, fmt) -> list[batchjob.Job]:
        return batchjob.plan(self.sep, files, input_dir, output_dir, filename, fmt)

    def run(self, job: batchjob.Job, output_dir: Path, overwrite: bool, how: dict, want_speech: bool):
        from .cli.report import speech_of_files
        outcome = batchjob.run_job(self.sep, job, output_dir, overwrite, how,
                                   speech_of_files=speech_of_files if want_speech else None)
        return outcome, os.getpid(), socket.gethostname()


@dataclass
class WorkerStats:
    """What one worker did: files separated, their audio and the time spent on them."""
    files: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    deaths: int = 0
    pids: list[int] = field(default_factory=list)
    node: str = ""

    def line(self, k: int) -> str:
        rate = self.audio_seconds / self.busy_seconds if self.busy_seconds else 0.0
        where = f"pid {', '.join(map(str, self.pids))} on {self.node}" if self.pids else "idle"
        text = (f"worker {k} ({where}): {self.files} files, {self.audio_seconds / 3600:.3f} h of audio in "
                f"{self.busy_seconds:.1f} s, {rate:.1f} audio hours per hour")
        return text + (f"; died {self.deaths}x" if self.deaths else "")


@dataclass
class _Item:
    job: batchjob.Job
    tries: int = 0
    not_before: float = 0.0
    avoid: set = field(default_factory=set)


def resolve_address(address: str) -> str:
    """'local' (--ray without a value) means $RAY_ADDRESS when set, else a new Ray instance on this machine."""
    if address == "local":
        return os.environ.get("RAY_ADDRESS") or "local"
    return address


class Cluster:
    """A connection to Ray with `workers` SeparatorWorker actors (None: as many as the cluster's CPUs, and GPUs
    when gpus_per_worker > 0, allow, at most `most`)."""

    def __init__(self, address: str, separator_kwargs: dict, workers: int | None, cpus_per_worker: float,
                 gpus_per_worker: float, most: int):
        ray = self.ray = _ray()
        address = resolve_address(address)
        if cpus_per_worker <= 0 or gpus_per_worker < 0 or (workers is not None and workers < 1):
            raise MossepError("--ray-workers must be at least 1, --ray-cpus-per-worker positive and "
                              "--ray-gpus-per-worker not negative")
        extra = {"include_dashboard": False} if address == "local" else {}
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **extra)
        except Exception as e:
            raise MossepError(f"--ray {address}: cannot start or join Ray ({type(e).__name__}: {reason(e)})") from None
        try:
            if workers is None:
                res = ray.cluster_resources()
                workers = int(res.get("CPU", 0) // cpus_per_worker)
                if gpus_per_worker:
                    workers = min(workers, int(res.get("GPU", 0) // gpus_per_worker))
                if workers < 1:
                    raise MossepError(f"--ray {address}: the cluster has {res.get('CPU', 0):g} CPUs and "
                                      f"{res.get('GPU', 0):g} GPUs, too few for one worker")
                workers = min(workers, most)
            kwargs = dict(separator_kwargs)
            if kwargs.get("threads") is None:
                kwargs["threads"] = max(1, int(cpus_per_worker))
            actor = ray.remote(SeparatorWorker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                                        max_restarts=-1, max_task_retries=0)
            self.workers = [actor.remote(kwargs) for _ in range(workers)]
            infos = ray.get([w.info.remote() for w in self.workers])
            for info in infos:
                if info["error"]:
                    raise MossepError(info["error"])
            self.num_speakers = infos[0]["num_speakers"]
            self.notes = infos[0]["notes"]
            self.stats = [WorkerStats(pids=[i["pid"]], node=i["node"]) for i in infos]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Disconnect; the workers (actors of this job) end with it."""
        self.ray.shutdown()

    def plan(self, files: list[Path], input_dir: Path, output_dir: Path, filename: str, fmt: str):
        return self.ray.get(self.workers[0].plan.remote(files, input_dir, output_dir, filename, fmt))

    def run(self, jobs: list[batchjob.Job], seconds: dict[Path, float], output_dir: Path, overwrite: bool,
            how: dict, want_speech: bool, on_outcome: Callable[[batchjob.Outcome, float], None],
            on_note: Callable[[str], None]) -> None:
        """Run `jobs` on the workers, a file at a time per worker; on_outcome(outcome, its input's audio seconds)
        as each file finishes (`seconds`: audio_seconds of each input, for the progress and the throughput)."""
        ray = self.ray
        pending = collections.deque(_Item(j) for j in jobs)
        free = list(range(len(self.workers)))
        inflight: dict = {}
        while pending or inflight:
            now = time.monotonic()
            for w in list(free):
                item = next((i for i in pending if i.not_before <= now and w not in i.avoid), None)
                if item is None:  # every worker has failed on it: any free one may try again
                    item = next((i for i in pending if i.not_before <= now
                                 and len(i.avoid) >= len(self.workers)), None)
                if item is None:
                    continue
                pending.remove(item)
                free.remove(w)
                ref = self.workers[w].run.remote(item.job, output_dir, overwrite, how, want_speech)
                inflight[ref] = (w, item)
            if not inflight:
                time.sleep(0.05)
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for ref in ready:
                w, item = inflight.pop(ref)
                free.append(w)
                try:
                    outcome, pid, node = ray.get(ref)
                except ray.exceptions.RayActorError as e:  # the worker died on this file
                    self.stats[w].deaths += 1
                    item.tries += 1
                    item.avoid.add(w)
                    cause = type(e).__name__
                    if item.tries < MAX_TRIES:
                        on_note(f"{item.job.input}: worker {w + 1} died on it ({cause}); it goes to another worker")
                        item.not_before = time.monotonic() + STALE_SECONDS
                        pending.appendleft(item)
                        continue
                    message = f"{item.job.input}: its worker died {item.tries} times on it ({cause})"
                    outcome = batchjob.Outcome(item.job.input, "failed", error=message, message=message)
                except ray.exceptions.RayError as e:
                    message = f"{item.job.input}: {type(e).__name__}: {reason(e)}"
                    outcome = batchjob.Outcome(item.job.input, "failed", error=message, message=message)
                else:
                    stats = self.stats[w]
                    if pid not in stats.pids:
                        stats.pids.append(pid)
                    stats.node = node
                    stats.busy_seconds += outcome.busy_seconds
                    if outcome.status == "separated":
                        stats.files += 1
                        stats.audio_seconds += seconds[item.job.input]
                on_outcome(outcome, seconds[item.job.input])


def audio_seconds(path: Path) -> float:
    """The duration of an audio file from its header (0 when it cannot be read)."""
    import soundfile as sf
    try:
        return float(sf.info(str(path)).duration)
    except Exception:
        return 0.0
