"""Strict state-dict checks with one-line error messages."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import MossepError, reason


def load_failure(e: Exception) -> str:
    """What went wrong in torch.load, in a few words: torch's own messages run to several sentences of advice
    (including re-running with weights_only=False, which is not for mossep's users)."""
    text = str(e)
    if "Weights only load failed" in text:  # random bytes, or a pickle that needs code to load
        _, marker, after = text.partition("WeightsUnpickler error:")
        lines = [line.strip() for line in (after if marker else text.partition("\n")[2]).splitlines()]
        lines = [line for line in lines if line and not line.startswith(("Check the documentation", "(", "Please"))]
        detail = lines[0].split(". ", 1)[0].rstrip(".") if lines else ""
        return "not a plain tensor file; weights-only loading refused it" + (f": {detail}" if detail else "")
    if "PytorchStreamReader" in text:  # a zip checkpoint cut short or damaged
        return "truncated or corrupt: " + reason(e).split(". ", 1)[0]
    return reason(e)


def torch_load_tensors(path: Path) -> dict:
    """torch.load with weights_only=True; any failure becomes a MossepError naming the file."""
    if not path.is_file():
        raise MossepError(f"{path}: checkpoint file is missing")
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol: nothing the user can act on
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, not a torch file ...
        raise MossepError(f"{path}: cannot read checkpoint ({load_failure(e)})") from None


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load `state` into `module`, requiring exactly the module's keys with equal shapes."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MossepError(f"{where}: not a state dict of tensors")
    expected = module.state_dict()
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
    if problems:
        raise MossepError(f"{where}: checkpoint does not match the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
