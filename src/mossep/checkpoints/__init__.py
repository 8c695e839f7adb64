"""Load any checkpoint mossep knows: its own file, an official ModelScope MossFormer or MossFormer2
directory, a MossFormer2 standalone (Hugging Face) folder, or a ClearerVoice MossFormer2 file/directory."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MossepError
from ..hub import resolve as resolve_name
from ..models.mossformer import Separator
from .clearvoice import is_clearvoice, load_clearvoice
from .modelscope import is_modelscope_dir, load_modelscope
from .modelscope2 import is_modelscope2, load_modelscope2
from .native import is_native_file, load_native, save_native
from .standalone import is_standalone, load_standalone

__all__ = ["LoadedModel", "load_checkpoint", "save_native", "default_model_path", "bundled_model_path"]


@dataclass
class LoadedModel:
    model: Separator
    source: str  # "mossep", "modelscope", "modelscope2", "standalone", "clearvoice"
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. how the sample rate was chosen

    @property
    def config(self):
        return self.model.config


def bundled_model_path(name: str = "default") -> Path:
    """A checkpoint shipped in weights/ as NAME.safetensors (inside the installed package, or the source
    tree's): `default`, the model used when none is given, or another bundled one (`mossep models`)."""
    here = Path(__file__).resolve().parent.parent
    file = f"{name}.safetensors"
    for cand in (here / "weights" / file, here.parent.parent / "weights" / file):
        if cand.is_file():
            return cand
    raise MossepError(f"no {name} model found (weights/{file}); pass --model PATH")


def default_model_path() -> Path:
    """The checkpoint used when none is given (weights/default.safetensors)."""
    return bundled_model_path("default")


def load_checkpoint(path: str | Path | None, sample_rate: int | None = None) -> LoadedModel:
    """Load a checkpoint of any supported format, strictly, without executing code from it.

    path: a file or folder; or a model name or hub id (mossep.hub: fetched on first use, then cached).
    sample_rate: only for formats that do not store it (ClearerVoice MossFormer2).
    """
    named = None if path is None else resolve_name(path)
    if named is not None:
        rate = sample_rate
        if rate is None and named.path is not None and is_clearvoice(named.path):  # a format that stores no rate
            rate = named.entry.sample_rate
        loaded = load_checkpoint(named.path or bundled_model_path(named.entry.name), rate)
        if rate != sample_rate:  # the loader's first note says where the rate came from
            loaded.notes[0] = f"sample rate from mossep's model list ({named.entry.name})"
        loaded.notes.append(named.note)
        return loaded
    path = default_model_path() if path is None else Path(path)
    if not path.exists():
        raise MossepError(f"{path}: model not found (neither a file nor a name that `mossep models` lists)")
    if is_native_file(path):
        model, meta, notes = load_native(path)
        if sample_rate is not None and sample_rate != model.config.sample_rate:
            raise MossepError(f"{path}: model runs at {model.config.sample_rate} Hz; --model-rate {sample_rate} contradicts it")
        return LoadedModel(model.eval(), "mossep", path, meta, notes)
    if is_standalone(path):  # before ClearerVoice, which takes any .bin/.ckpt file
        model, conf, notes = load_standalone(path, sample_rate)
        return LoadedModel(model.eval(), "standalone", path, {"source_config": conf}, notes)
    if is_modelscope2(path):  # before ModelScope MossFormer: both folders hold configuration.json
        model, conf, notes = load_modelscope2(path, sample_rate)
        return LoadedModel(model.eval(), "modelscope2", path, {"source_config": conf}, notes)
    if is_modelscope_dir(path):
        model, notes = load_modelscope(path)
        if sample_rate is not None and sample_rate != 8000:
            raise MossepError(f"{path}: the official MossFormer model runs at 8000 Hz")
        return LoadedModel(model.eval(), "modelscope", path, {}, ["official ModelScope MossFormer, 8000 Hz", *notes])
    if is_clearvoice(path):
        model, notes = load_clearvoice(path, sample_rate)
        return LoadedModel(model.eval(), "clearvoice", path, {}, notes)
    if path.is_dir():
        raise MossepError(f"{path}: directory is not a known model layout (expected configuration.json + encoder.bin, "
                          "decoder.bin, masknet.bin; configuration.json + pytorch_model.pt; config.json + "
                          "pytorch_model.bin; or a ClearerVoice checkpoint folder)")
    raise MossepError(f"{path}: not a known checkpoint format (.safetensors from mossep, or a ClearerVoice .pt)")
