"""What every checkpoint loader shares: reading tensor files without running code, and checking a
configuration against the tensors present before any model is built, with one-line error messages.

The order in every loader: parse the configuration (ModelConfig refuses wrong types and sizes beyond
models.config.LIMITS), read the tensors (memory bounded by the file's size), check_config (the model the
configuration describes, built on the meta device where it allocates nothing, must have exactly these names,
shapes and float dtypes, and finite values), and only then build_checked builds the real model.
"""
from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import MossepError, reason
from ..models import ModelConfig, build_model

# stored as / how it is loaded: weights are computed in float32, and these convert to it
UPCAST = (torch.float16, torch.bfloat16)  # exactly: every value is a float32 value
ROUNDED = (torch.float64,)  # to the nearest float32


def load_failure(e: Exception) -> str:
    """What went wrong in torch.load, in a few words. torch's own messages run to several sentences of advice,
    including re-running with weights_only=False: mossep never does that, so it never repeats it."""
    text = str(e)
    if "Weights only load failed" in text:
        code = re.search(r"GLOBAL ([\w.]+)", text)
        if code:  # a pickle that names a function or class to call: refused before anything ran
            return (f"refused: it asks to run Python code ({code.group(1)}), and mossep never unpickles code; "
                    "only plain tensors are read")
        _, _, after = text.partition("WeightsUnpickler error:")
        detail = next((line.strip() for line in after.splitlines() if line.strip()), "")
        return "not a PyTorch tensor file" + (f" ({detail.split('. ', 1)[0].rstrip('.')})" if detail else "")
    if "PytorchStreamReader" in text:  # a zip checkpoint cut short or damaged
        return "truncated or corrupt: " + reason(e).split(". ", 1)[0]
    return reason(e)


MAX_JSON_BYTES = 1 << 20  # configuration files are a few KB; a larger one is not a configuration


def read_json_object(path: Path) -> dict:
    """A JSON file whose top level is an object (configuration.json, config.json), or a one-line MossepError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise MossepError(f"{path}: too large for a configuration file ({path.stat().st_size} bytes)")
        conf = json.loads(path.read_bytes())
    except MossepError:
        raise
    except OSError as e:
        raise MossepError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # bad JSON or encoding, nesting too deep
        raise MossepError(f"{path}: not valid JSON ({reason(e)})") from None
    if not isinstance(conf, dict):
        raise MossepError(f"{path}: expected a JSON object, got a JSON {json_type(conf)}")
    return conf


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check_archive(path: Path) -> None:
    """torch.save writes a zip of uncompressed records. Requiring exactly that keeps the memory torch.load
    needs within the file's size: a compressed record (a zip bomb) or the pre-1.6 legacy format, which
    allocates every storage at the size its pickle claims before reading it, is refused."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip that lost its end (the directory is at the end)
                raise MossepError(f"{path}: cannot read checkpoint (truncated or corrupt: no zip directory)")
        raise MossepError(f"{path}: cannot read checkpoint (refused: not a PyTorch zip archive, which torch.save "
                          "has written since torch 1.6; the legacy format is not read)")
    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise MossepError(f"{path}: cannot read checkpoint (truncated or corrupt: {reason(e)})") from None
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise MossepError(f"{path}: cannot read checkpoint (record {packed[0]} is compressed; torch.save never "
                          "compresses, so the file was altered)")
    if sum(r.file_size for r in records) > path.stat().st_size:
        raise MossepError(f"{path}: cannot read checkpoint (its records claim more bytes than the file holds)")


def torch_load_tensors(path: Path) -> dict:
    """torch.load with weights_only=True; any failure becomes a MossepError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MossepError(f"{path}: checkpoint file is missing")
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol: nothing the user can act on
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, not a torch file ...
        raise MossepError(f"{path}: cannot read checkpoint ({load_failure(e)})") from None


def _mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """'' when `state` has exactly the keys and shapes of `expected`, else what differs, in one line."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes (first: {wrong[0]})")
    return "; ".join(problems)


def _check_tensors(state: Mapping, where: str) -> None:
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise MossepError(f"{where}: not a state dict of tensors")


class _ShapesOnly(TorchFunctionMode):
    """Inside torch.device("meta"): skip the initialisers, which change values only (meta tensors have none),
    and compute arange (small position tables) on the CPU. On meta tensors both run through torch's Python
    reference implementations, whose first use imports torch._dynamo and sympy: seconds on every load."""

    VALUE_ONLY = {"normal_", "uniform_", "fill_", "zero_", "constant_", "ones_", "zeros_", "xavier_uniform_",
                  "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_", "eye_",
                  "dirac_"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
        if getattr(func, "__name__", "") in self.VALUE_ONLY and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        if func is torch.arange:
            kwargs = {**kwargs, "device": "cpu"}
        return func(*args, **kwargs)


def meta_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict of the model `cfg` describes, without memory for its weights (meta tensors: names,
    shapes and dtypes). ModelConfig's bounds keep even the module objects this builds few."""
    with torch.device("meta"), _ShapesOnly():
        return build_model(cfg).state_dict()


class ConversionNote(str):
    """A note that the weights were stored in another float type and converted: `separate` and `batch` show
    these (other notes, e.g. how a sample rate was chosen, only `info`)."""


def _finite(t: torch.Tensor) -> bool:
    """Every value finite once in float32 (float64 beyond its range is not): the float64 sum of the float32
    values is finite exactly then. numpy's single-threaded sum: torch's thread pool made this check cost more
    than loading on a busy machine."""
    return bool(np.isfinite(t.detach().to(torch.float32).numpy().sum(dtype=np.float64)))


def check_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], where: str) -> list[str]:
    """`state` must have exactly the names and shapes of `expected` (a meta_state or part of one), be floating
    point where it is, and be finite. Returns notes on converted float types; raises MossepError naming `where`.

    float16 and bfloat16 convert to the float32 mossep computes in exactly, float64 rounds to it; integer,
    boolean, complex and 8-bit float tensors are refused, because weights quantized to them need scales that
    no format mossep reads stores, so the values alone would give a wrong model.
    """
    _check_tensors(state, where)
    problems = _mismatch(expected, state)
    if problems:
        raise MossepError(f"{where}: checkpoint does not match the model: {problems}")
    converted: dict[torch.dtype, list[str]] = {}
    for k, v in expected.items():
        got = state[k].dtype
        if got != v.dtype:
            if not (v.dtype == torch.float32 and got in UPCAST + ROUNDED):
                raise MossepError(f"{where}: tensor {k} is {str(got).removeprefix('torch.')}, expected "
                                  f"{str(v.dtype).removeprefix('torch.')} (quantized or integer weights are not "
                                  "supported; float16, bfloat16 and float64 are converted to float32)")
            converted.setdefault(got, []).append(k)
        if state[k].is_floating_point() and not _finite(state[k]):
            raise MossepError(f"{where}: tensor {k} holds NaN or infinite values")
    notes = []
    for dtype, keys in converted.items():
        how = "rounded to float32" if dtype in ROUNDED else "converted to float32 exactly"
        notes.append(ConversionNote(f"{len(keys)} of {len(expected)} tensors in {Path(where).name} are stored as "
                                    f"{str(dtype).removeprefix('torch.')}, {how}"))
    return notes


def check_config(cfg: ModelConfig, state: Mapping[str, torch.Tensor], where: str) -> list[str]:
    """Before anything is allocated: the model `cfg` describes (built on the meta device) must have exactly the
    tensors in `state` (see check_state). Loading that state then needs no more memory than its tensors.
    Returns notes for the user; raises MossepError naming `where`."""
    return check_state(meta_state(cfg), state, where)


def build_checked(cfg: ModelConfig, state: Mapping[str, torch.Tensor], where: str) -> tuple[nn.Module, list[str]]:
    """check_config, then build the model and load `state` into it; returns (model, notes)."""
    notes = check_config(cfg, state, where)
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)  # copies into the float32 parameters, converting
    return model, notes
