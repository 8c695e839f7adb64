"""Describe any loadable checkpoint, and convert one to mossep's own format with a check that the
converted file computes what the source computes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import MossepError
from ..fsutil import atomic_path, check_new_file
from ..models.mossformer import Separator
from . import LoadedModel, load_checkpoint
from .native import SUFFIX, load_native, save_native

FORMAT_NAMES = {
    "mossep": "mossep (.safetensors)",
    "modelscope": "ModelScope MossFormer directory",
    "modelscope2": "ModelScope MossFormer2 directory",
    "standalone": "MossFormer2 standalone folder (Hugging Face alibabasglab/mossformer2-*)",
    "clearvoice": "ClearerVoice MossFormer2 checkpoint",
}
VERIFY_TOLERANCE = 1e-5  # max |converted - source| / rms(source); a faithful copy gives 0


def sample_rate_origin(loaded: LoadedModel) -> str:
    """How the model's sample rate was determined, in words."""
    if loaded.source == "clearvoice":
        return loaded.notes[0].removeprefix("sample rate ")  # load_clearvoice puts this note first
    if loaded.source == "modelscope":
        return "fixed: the official ModelScope MossFormer is an 8000 Hz model"
    if loaded.source == "modelscope2":
        return "fixed: the official ModelScope MossFormer2 pipeline accepts only 8000 Hz"
    if loaded.source == "standalone":
        return "from config.json"
    origin = loaded.metadata.get("sample_rate_source")
    return "stored in the checkpoint" + (f" (at conversion: {origin})" if origin else "")


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Unique parameters (a shared tensor counted once), trainable ones, and buffer elements."""
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def describe(loaded: LoadedModel) -> dict[str, Any]:
    """A JSON-ready summary: format, architecture, rate and its origin, speakers, config, counts, metadata."""
    cfg = loaded.config
    return {
        "path": str(loaded.path),
        "format": loaded.source,
        "format_name": FORMAT_NAMES.get(loaded.source, loaded.source),
        "architecture": cfg.arch,
        "sample_rate": cfg.sample_rate,
        "sample_rate_source": sample_rate_origin(loaded),
        "num_spks": cfg.num_spks,
        "config": cfg.to_dict(),
        "parameters": parameter_counts(loaded.model),
        "metadata": loaded.metadata,
        "notes": loaded.notes,
    }


def output_difference(a: Separator, b: Separator, seconds: float = 1.0, seed: int = 0) -> float:
    """max |b(x) - a(x)| / rms(a(x)) on seeded random noise of `seconds` at a's sample rate."""
    gen = torch.Generator().manual_seed(seed)
    T = max(int(a.config.sample_rate * seconds), a.config.min_samples)
    x = 0.1 * torch.randn(1, T, generator=gen)
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    rms = ya.pow(2).mean().sqrt().clamp_min(1e-12)
    return float((ya - yb).abs().max() / rms)


def convert(src: str | Path, out: str | Path, sample_rate: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Load `src` (any supported format), write it as a mossep .safetensors file at `out`, and check that
    the written file reproduces the source model's output. Nothing is left at `out` unless the check passes.
    Returns a summary (describe() of the written model plus the measured difference)."""
    out = Path(out)
    if out.suffix != SUFFIX:
        raise MossepError(f"{out}: output must be a {SUFFIX} file")
    check_new_file(out, overwrite)
    loaded = load_checkpoint(src, sample_rate)
    metadata = {
        **loaded.metadata,
        "source_format": loaded.source,
        "source_path": loaded.path.name,
        "sample_rate": loaded.config.sample_rate,
        "sample_rate_source": sample_rate_origin(loaded),
        "num_spks": loaded.config.num_spks,
        "mask_encoder": loaded.config.mask_encoder,
        "source_notes": loaded.notes,
        "converted_by": f"mossep {__version__}",
    }
    with atomic_path(out) as tmp:
        save_native(loaded.model, tmp, metadata)
        converted, _, _ = load_native(tmp)
        diff = output_difference(loaded.model, converted)
        if not diff <= VERIFY_TOLERANCE:
            raise MossepError(f"{out}: converted model differs from {loaded.path} (max error {diff:.3g} of the "
                              f"output RMS); nothing written")
    result = describe(LoadedModel(converted.eval(), "mossep", out, metadata))
    result["verified_max_rel_error"] = diff
    return result
