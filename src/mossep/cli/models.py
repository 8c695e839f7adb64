"""`mossep info` and `mossep convert`: inspect a checkpoint, or turn it into mossep's own format."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..checkpoints import load_checkpoint
from ..checkpoints.convert import convert as convert_checkpoint
from ..checkpoints.convert import describe
from . import options
from .app import app


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v if isinstance(v, str) else json.dumps(v)))
    return rows


def info_table(summary: dict[str, Any]) -> Table:
    table = Table(title=summary["path"], title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    p = summary["parameters"]
    table.add_row("format", summary["format_name"])
    table.add_row("architecture", summary["architecture"])
    table.add_row("sample rate", f"{summary['sample_rate']} Hz ({summary['sample_rate_source']})")
    table.add_row("speakers", str(summary["num_spks"]))
    table.add_row("parameters", f"{p['total']:,} ({p['trainable']:,} trainable; buffers {p['buffers']:,} elements)",
                  end_section=True)
    for k, v in summary["config"].items():
        table.add_row(f"config.{k}", str(v))
    if summary["metadata"]:
        table.rows[-1].end_section = True
        for k, v in _flatten(summary["metadata"]):
            table.add_row(f"metadata.{k}", v)
    for note in summary["notes"]:
        table.add_row("note", note)
    return table


@app.command()
def info(
    model: Optional[Path] = typer.Argument(None, help="Checkpoint: mossep .safetensors, ModelScope MossFormer "
                                                      "or MossFormer2 folder, Hugging Face MossFormer2 folder, "
                                                      "or ClearerVoice MossFormer2 folder/.pt file. "
                                                      "Default: the bundled model."),
    model_rate: Optional[int] = options.MODEL_RATE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Show a checkpoint's architecture, sample rate, speakers, configuration, size and metadata."""
    summary = describe(load_checkpoint(model, model_rate))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        Console().print(info_table(summary))


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Checkpoint in any format mossep loads."),
    out: Path = typer.Argument(..., help="Output file, .safetensors (mossep's own format)."),
    model_rate: Optional[int] = options.MODEL_RATE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Convert a checkpoint to mossep's .safetensors format, checking that the result computes the same output."""
    summary = convert_checkpoint(src, out, model_rate, overwrite)
    typer.echo(f"wrote {out}: {summary['architecture']}, {summary['sample_rate']} Hz "
               f"({summary['metadata']['sample_rate_source']}), {summary['num_spks']} speakers, "
               f"{summary['parameters']['total']:,} parameters; output matches the source "
               f"(max error {summary['verified_max_rel_error']:.2g} of RMS)")
