"""`mossep evaluate`: separate a dataset (or score separations made earlier) and report SI-SNRi / SDRi."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import MossepError
from ..datasets import find_items
from ..evaluate import EvalReport, ItemScore, evaluate_dataset, write_csv, write_json
from ..fsutil import check_new_file
from . import options
from .app import app


def _db(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _results_table(report: EvalReport) -> Table:
    timed = report.estimates is None
    table = Table(title=f"{report.dataset} ({report.layout}, {len(report.items)} items)", title_justify="left")
    table.add_column("item")
    for name in ("dur s", "SI-SNR", "SI-SNRi", "SDR", "SDRi") + (("time s", "RTF") if timed else ()):
        table.add_column(name, justify="right")

    def row(label: str, d: dict, end: bool = False) -> None:
        cells = [label, f"{d['duration_s']:.2f}", _db(d["si_snr"]), _db(d["si_snri"]), _db(d["sdr"]), _db(d["sdri"])]
        if timed:
            cells += [_db(d["process_s"]), "-" if d["rtf"] is None else f"{d['rtf']:.3f}"]
        table.add_row(*cells, end_section=end)

    for i, s in enumerate(report.items):
        row(s.id, s.to_dict(), end=i == len(report.items) - 1)
    row("mean / total", report.summary())
    return table


def summary_line(report: EvalReport) -> str:
    s = report.summary()
    line = (f"{s['items']} items, {s['duration_s']:.1f} s of audio: SI-SNRi {_db(s['si_snri'])} dB, "
            f"SDRi {_db(s['sdri'])} dB (SI-SNR {_db(s['si_snr'])} dB, SDR {_db(s['sdr'])} dB; "
            f"mixture SI-SNR {_db(s['input_si_snr'])} dB)")
    if s["process_s"] is not None:
        line += f"; separation {s['process_s']:.1f} s, real-time factor {s['rtf']:.3f}"
    if s["sdr_undefined"]:
        line += f"; SDR undefined for {s['sdr_undefined']} items (silent estimate)"
    return line


@app.command()
def evaluate(
    dataset: Path = typer.Argument(..., help="LibriMix split folder (mix_clean/, s1/, s2/[, s3/]), a folder of "
                                             "<id>_mix.wav + <id>_source1.wav ..., or a mix,s1,s2[,s3] CSV manifest; "
                                             "as many sources as the model separates."),
    model: Optional[str] = options.MODEL,
    estimates: Optional[Path] = typer.Option(None, "--estimates", help="Score separations already on disk "
                                             "(<id>_source1.wav or <stem>_spk1.wav ...) instead of running a model."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one row per item as CSV."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N items."),
    device: str = options.DEVICE,
    chunk_seconds: Optional[float] = options.CHUNK,
    overlap_seconds: Optional[float] = options.OVERLAP,
    threads: Optional[int] = options.THREADS,
    fast: bool = options.FAST,
    passes: Optional[int] = options.PASSES,
    wiener: Optional[bool] = options.WIENER,
    model_rate: Optional[int] = options.MODEL_RATE,
    noisy_model: Optional[str] = options.NOISY_MODEL,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --json/--csv files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary line."),
) -> None:
    """Separate every mixture of a dataset and report SI-SNR, SI-SNRi and SDRi per item and on average."""
    for path in (json_path, csv_path):
        if path is not None:
            check_new_file(path, overwrite)
    if estimates is not None and model is not None:
        raise MossepError("--estimates scores files already separated; it cannot be combined with --model")
    find_items(dataset)  # a bad dataset fails before the model loads
    err = Console(stderr=True)
    separator, model_info, settings = None, None, {}
    if estimates is None:
        from ..separator import Separator

        separator = Separator(model=model, device=device, chunk_seconds=chunk_seconds,
                              overlap_seconds=overlap_seconds, threads=threads, fast=fast, model_rate=model_rate,
                              passes=passes, wiener=wiener, noisy_model=options.noisy_choice(noisy_model))
        loaded = separator.loaded
        settings = {"device": str(getattr(separator, "device", device)),  # as resolved, where the separator says
                    "chunk_seconds": getattr(separator, "chunk_seconds", chunk_seconds),
                    "overlap_seconds": getattr(separator, "overlap_seconds", overlap_seconds),
                    "threads": threads, "fast": fast, "model_rate": model_rate,
                    "passes": getattr(separator, "passes", passes), "wiener": getattr(separator, "wiener", wiener)}
        model_info = {"path": str(loaded.path), "source": loaded.source, "sample_rate": separator.sample_rate,
                      "num_speakers": separator.num_speakers, "notes": list(loaded.notes)}
        if not quiet:
            err.print(f"model: {loaded.path} ({loaded.source}, {separator.sample_rate} Hz, "
                      f"{separator.num_speakers} speakers)", highlight=False)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task("evaluating", total=None)

        def on_item(done: int, total: int, s: ItemScore | None) -> None:
            text = "evaluating" if s is None else f"{s.id}: SI-SNRi {_db(s.si_snri)} dB"
            bar.update(task, completed=done, total=total, description=text)

        report = evaluate_dataset(dataset, separator=separator, estimates=estimates, limit=limit, on_item=on_item)
    report.model, report.settings = model_info, settings
    if json_path is not None:
        write_json(report, json_path, overwrite)
    if csv_path is not None:
        write_csv(report, csv_path, overwrite)
    out = Console(file=sys.stdout, highlight=False)
    if not out.is_terminal:
        out = Console(file=sys.stdout, highlight=False, width=160)
    if not quiet:
        out.print(_results_table(report))
    print(summary_line(report))
