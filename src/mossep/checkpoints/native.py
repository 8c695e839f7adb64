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
from ..models import ModelConfig
from ..models.mossformer import Separator
from .common import build_checked, json_type

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


def _short(e: Exception) -> str:
    """safetensors' message without its prefix and its list of every dtype it knows, at most 160 characters."""
    text = reason(e).removeprefix("Error while deserializing header: ").split(", expected one of")[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _header_json(header: dict[str, str], key: str, default: str, path: Path) -> dict:
    """A header entry that must hold a JSON object."""
    try:
        value = json.loads(header.get(key, default))
    except (ValueError, RecursionError) as e:
        raise MossepError(f"{path}: bad checkpoint header ({key} is not valid JSON: {reason(e)})") from None
    if not isinstance(value, dict):
        raise MossepError(f"{path}: bad checkpoint header ({key} must be a JSON object, got a JSON {json_type(value)})")
    return value


def load_native(path: Path) -> tuple[Separator, dict[str, Any], list[str]]:
    """(model, metadata, notes). Header and tensors come from one opening of the file (safe_open maps it once;
    safetensors itself refuses a header longer than 100 MB or tensors outside the file). The header's config
    is checked against the tensors before the model is built."""
    path = Path(path)
    if not path.is_file():
        raise MossepError(f"{path}: checkpoint file is missing")
    try:
        opened = safe_open(str(path), framework="pt")
        header = opened.metadata() or {}
    except Exception as e:
        raise MossepError(f"{path}: not a readable safetensors checkpoint ({_short(e)})") from None
    with opened as f:
        if header.get("format") != FORMAT:
            raise MossepError(f"{path}: safetensors file is not a mossep checkpoint (no 'format: mossep' header)")
        if header.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise MossepError(f"{path}: checkpoint format version {header['format_version'][:20]!r} is not "
                              f"supported (this mossep reads version {FORMAT_VERSION})")
        if "config" not in header:
            raise MossepError(f"{path}: bad checkpoint header (no config)")
        config = _header_json(header, "config", "", path)
        aliases = _header_json(header, "aliases", "{}", path)
        metadata = _header_json(header, "metadata", "{}", path)
        try:
            cfg = ModelConfig.from_dict(config)
        except (TypeError, ValueError) as e:
            raise MossepError(f"{path}: bad checkpoint header ({reason(e)})") from None
        try:
            state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise MossepError(f"{path}: cannot read tensors ({reason(e)})") from None
    for alias, stored in aliases.items():
        if not isinstance(stored, str) or stored not in state or alias in state:
            raise MossepError(f"{path}: bad checkpoint header (alias {str(alias)[:80]!r} -> {str(stored)[:80]!r} "
                              "does not name one stored tensor)")
        state[alias] = state[stored]
    model, notes = build_checked(cfg, state, str(path))
    return model, metadata, notes
