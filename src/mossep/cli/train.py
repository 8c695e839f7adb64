"""`mossep train`: train from scratch or fine-tune; options from a YAML/TOML file, CLI flags override."""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import List, Optional

import typer

from .app import app


def _progress_printer(total: int, quiet: bool):
    if quiet:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    task = progress.add_task("train", total=total, info="")

    def update(row: dict) -> None:
        info = f"loss {row['loss']:.2f} lr {row['lr']:.1e}"
        if "valid_si_snri" in row:
            info += f" | valid SI-SNRi {row['valid_si_snri']:.2f} dB"
            progress.console.print(f"step {row['step']}: validation SI-SNRi {row['valid_si_snri']:.2f} dB")
        progress.update(task, completed=row["step"], info=info)

    return progress, update


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML or TOML file with any of the options below."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", "-o", help="Folder for checkpoints and logs [runs/train]."),
    arch: Optional[str] = typer.Option(None, help="mossformer or mossformer2."),
    size: Optional[str] = typer.Option(None, help="Model size preset: tiny, cpu-small, cpu-base, paper-s, paper-m, paper-l."),
    num_spks: Optional[int] = typer.Option(None, "--num-spks", help="Talkers per mixture and model outputs [2]; 3 mixes three distinct speakers."),
    init: Optional[str] = typer.Option(None, help="Fine-tune from this checkpoint (mossep file, ModelScope dir, ClearerVoice file)."),
    train_dir: Optional[List[str]] = typer.Option(None, "--train-dir", help="SET/<speaker>/*.flac folder for dynamic mixing (repeatable)."),
    train_set: Optional[List[str]] = typer.Option(None, "--train-set", help="Fixed mixture set: LibriMix folder, itemN_mix folder or mix,s1,s2 CSV (repeatable)."),
    valid_dir: Optional[List[str]] = typer.Option(None, "--valid-dir", help="Held-out speakers' folder, mixed deterministically (repeatable)."),
    segment_seconds: Optional[float] = typer.Option(None, help="Training crop length [4]."),
    batch_size: Optional[int] = typer.Option(None, help="Mixtures per step and process [4]."),
    steps: Optional[int] = typer.Option(None, help="Total optimiser steps [10000]."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate [1e-3]."),
    valid_every: Optional[int] = typer.Option(None, help="Validate every N steps [500]."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Save the training state every N steps [100]."),
    seed: Optional[int] = typer.Option(None, help="Random seed [0]."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto."),
    threads: Optional[int] = typer.Option(None, help="CPU threads."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop with a checkpoint after this much time."),
    reverb: Optional[float] = typer.Option(None, help="Probability per mixture of a room, simulated or measured (targets: the dry sources) [0]."),
    noise: Optional[float] = typer.Option(None, help="Probability per mixture of ambient noise, babble or synthetic noise (targets: the clean sources) [0]."),
    eq: Optional[float] = typer.Option(None, help="Probability per mixture of a random channel EQ [0]. Ranges and kinds (rt60, snr_db, noise_kinds, rooms): config file."),
    noise_dir: Optional[List[str]] = typer.Option(None, "--noise-dir", help="Folder of ambient noise recordings; the last fifth of each is held out (repeatable)."),
    rir_dir: Optional[List[str]] = typer.Option(None, "--rir-dir", help="Folder of measured room impulse responses (repeatable; held_out_rirs: config file)."),
    partial: Optional[float] = typer.Option(None, help="Share of mixtures where one talker speaks over only part of the segment [0]."),
    solo: Optional[float] = typer.Option(None, help="Share of mixtures where one talker speaks alone; the other outputs are taught silence [0]."),
    sequential: Optional[float] = typer.Option(None, help="Share of mixtures where two talkers speak one after the other, without overlap [0]."),
    mixing: Optional[str] = typer.Option(None, help="cpu, or device: mix on the training device (GPU); default cpu."),
    schedule: Optional[str] = typer.Option(None, help="plateau (halve on plateau) or cosine (over --max-minutes, else --steps); default plateau."),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the training forward (default off)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/last.pt exactly."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run in OUT_DIR (refused otherwise)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a MossFormer on dynamically mixed single-speaker recordings; keeps the best by validation SI-SNRi."""
    from ..train import TrainConfig, Trainer, check_run_folder, clear_run_folder

    opts = TrainConfig.from_file(config) if config else {}
    given = dict(out_dir=out_dir, arch=arch, size=size, num_spks=num_spks, init=init, train_dirs=train_dir or None, train_sets=train_set or None, valid_dirs=valid_dir or None,
                 segment_seconds=segment_seconds, batch_size=batch_size, steps=steps, lr=lr, valid_every=valid_every,
                 checkpoint_every=checkpoint_every, seed=seed, device=device, threads=threads, max_minutes=max_minutes,
                 reverb=reverb, noise=noise, eq=eq, noise_dirs=noise_dir or None, rir_dirs=rir_dir or None,
                 partial=partial, solo=solo, sequential=sequential, mixing=mixing, schedule=schedule, compile=compile_, quiet=quiet or None)
    opts.update({k: v for k, v in given.items() if v is not None})
    cfg = TrainConfig(**opts)
    check_run_folder(cfg.out_dir, resume, overwrite)  # before the folder is created or anything replaced
    trainer = Trainer(cfg)
    if resume:
        trainer.resume()
    elif overwrite and trainer.rank == 0:
        clear_run_folder(cfg.out_dir)
    progress, update = _progress_printer(cfg.steps, cfg.quiet or trainer.rank != 0)
    trainer.progress = update
    if progress:
        progress.start()
        progress.update(progress.task_ids[0], completed=trainer.step)
    try:
        result = trainer.fit()
    finally:
        if progress:
            progress.stop()
    if trainer.rank == 0:
        best = f"{result['best_si_snri']:.2f} dB" if result["best_si_snri"] > -1e9 else "n/a (no validation)"
        state = "interrupted" if result["interrupted"] else "stopped"
        print(f"{state} at step {result['step']}; best validation SI-SNRi {best}; outputs in {cfg.out_dir}", file=sys.stderr)
