"""mossep's own checkpoint format: one safetensors file holding config, weights and metadata.

safetensors stores tensors and a string->string header only, so loading executes no code.
Header keys: "format" = "mossep", "format_version", "config" (JSON ModelConfig), "metadata" (JSON).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import MossepError, reason
from ..fsutil import atomic_path
from ..models import ModelConfig, build_model
from ..models.mossformer import Separator
from .common import load_strict

FORMAT = "mossep"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"


def is_native_file(path: Path) -> bool:
    return path.is_file() and path.suffix == SUFFIX


def _unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict without aliased entries (shared rotary freqs), and alias -> stored key."""
    state, aliases, seen = {}, {}, {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), v.shape, v.stride()) if v.numel() else None
        if key is not None and key in seen:
            aliases[k] = seen[key]
            continue
        if key is not None:
            seen[key] = k
        state[k] = v.detach().to("cpu", torch.float32).contiguous()
    return state, aliases


def save_native(model: Separator, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    state, aliases = _unique_state(model)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "aliases": json.dumps(aliases),
        "metadata": json.dumps(metadata or {}),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)


def load_native(path: Path) -> tuple[Separator, dict[str, Any]]:
    """Header and tensors come from one opening of the file (safe_open maps it once)."""
    path = Path(path)
    if not path.is_file():
        raise MossepError(f"{path}: checkpoint file is missing")
    try:
        opened = safe_open(str(path), framework="pt")
        header = opened.metadata() or {}
    except Exception as e:
        raise MossepError(f"{path}: not a readable safetensors checkpoint ({reason(e)})") from None
    with opened as f:
        if header.get("format") != FORMAT:
            raise MossepError(f"{path}: safetensors file is not a mossep checkpoint (no 'format: mossep' header)")
        try:
            cfg = ModelConfig.from_dict(json.loads(header["config"]))
            aliases = json.loads(header.get("aliases", "{}"))
            metadata = json.loads(header.get("metadata", "{}"))
        except Exception as e:
            raise MossepError(f"{path}: bad checkpoint header ({e})") from None
        try:
            state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise MossepError(f"{path}: cannot read tensors ({reason(e)})") from None
    for alias, stored in aliases.items():
        if stored in state:
            state[alias] = state[stored]
    model = build_model(cfg)
    load_strict(model, state, str(path))
    return model, metadata
