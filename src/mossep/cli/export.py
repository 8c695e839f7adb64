"""`mossep export MODEL out.onnx`: the network as an ONNX file with dynamic batch and length (mossep.export)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..export import export_onnx
from . import options
from .app import app


@app.command("export")
def export(
    model: str = typer.Argument(..., help="Checkpoint in any format mossep loads, or a model name as for --model "
                                "(`mossep models`; `default` is the bundled model)."),
    out: Path = typer.Argument(..., help="Output file, .onnx."),
    model_rate: Optional[int] = options.MODEL_RATE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Export a model's network to ONNX (mixture (batch, samples) -> sources (batch, speakers, samples), any
    batch and length), kept only if onnxruntime reproduces the PyTorch output within 1e-4 of its RMS. Needs
    `pip install 'mossep\\[onnx]'`."""
    s = export_onnx(model, out, overwrite=overwrite, model_rate=model_rate)
    typer.echo(f"wrote {out}: {s['arch']}, {s['sample_rate']} Hz, {s['num_spks']} speakers, "
               f"{s['parameters']:,} parameters, ONNX opset {s['opset']}; onnxruntime matches PyTorch "
               f"(max error {s['max_rel_error']:.2g} of RMS)")
