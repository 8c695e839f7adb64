"""ClearerVoice-Studio MossFormer2 checkpoints (e.g. MossFormer2_SS_8K / _16K).

Accepted layouts:
- a model folder holding a pointer file (`last_best_checkpoint` or `last_checkpoint`) whose first line
  names the weights file in the same folder;
- the weights file itself (`*.pt`, `*.pth`, `*.ckpt`, `*.bin`).
The file is read with torch.load(weights_only=True). It holds either a bare state dict or a training
dict {'model': state dict, 'optimizer', 'epoch', 'step'}; keys may carry DistributedDataParallel's
`module.` prefix. Loading is strict: every model tensor must be present with its exact shape, and no
other tensor may be in the state dict.

The file stores no configuration: widths and depth are read from tensor shapes, and the sample rate,
which no weight records, comes from the caller or from the folder/file name ("8k", "16K", ...).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import MossepError
from ..models import ModelConfig
from ..models.mossformer import Separator
from .common import build_checked, torch_load_tensors

POINTER_FILES = ("last_best_checkpoint", "last_checkpoint")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
CONTAINER_EXTRAS = ("optimizer", "epoch", "step")
# official top-level module names -> mossep's Separator attributes
PREFIX_MAP = (("enc.", "encoder."), ("dec.", "decoder."), ("mask_net.", "mask_net."))
STACK = "mask_net.mdl.intra_mdl.mossformerM."
_RATE_IN_NAME = re.compile(r"(?:^|[^0-9a-z])(8|16)k(?:hz)?(?:[^0-9a-z]|$)", re.IGNORECASE)


def is_clearvoice(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any((path / p).is_file() for p in POINTER_FILES)
    return path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES


def resolve_weights(path: Path) -> tuple[Path, str | None]:
    """The weights file of a folder (via its pointer file) or the file itself; also the pointer's name."""
    path = Path(path)
    if not path.is_dir():
        return path, None
    for pointer in POINTER_FILES:
        if (path / pointer).is_file():
            with open(path / pointer, "rb") as f:  # a file name: the first 4 KB are plenty
                lines = f.read(4096).decode(errors="replace").strip().splitlines()
            if not lines or not lines[0].strip():
                raise MossepError(f"{path / pointer}: pointer file is empty (expected the weights file name)")
            weights = path / Path(lines[0].strip()).name
            try:
                found = weights.is_file()
            except OSError:  # e.g. a name longer than the file system allows (pathlib raises for that)
                found = False
            if not found:
                raise MossepError(f"{path / pointer}: names {weights.name[:80]}, which is not in {path}")
            return weights, pointer
    raise MossepError(f"{path}: no {' or '.join(POINTER_FILES)} pointer file in this folder")


def rate_from_name(*names: str) -> tuple[int, str] | None:
    """(8000 or 16000, the name) for the first name that mentions 8k/16k (any case); None if none does
    or if that name mentions both."""
    for name in names:
        found = {int(m) * 1000 for m in _RATE_IN_NAME.findall(name)}
        if len(found) == 1:
            return found.pop(), name
        if len(found) > 1:
            return None  # ambiguous: e.g. "16k_to_8k"
    return None


def choose_sample_rate(path: Path, weights: Path, sample_rate: int | None) -> tuple[int, str]:
    """(rate, how it was chosen). The argument wins; otherwise the folder/file names; otherwise an error."""
    names = [path.name, weights.name] if path.is_dir() else [path.name, path.parent.name]
    guessed = rate_from_name(*names)
    if sample_rate is not None:
        if sample_rate <= 0:
            raise MossepError(f"{path}: --model-rate must be positive, got {sample_rate}")
        extra = f"; the name {guessed[1]!r} suggests {guessed[0]} Hz" if guessed and guessed[0] != sample_rate else ""
        return sample_rate, f"given by --model-rate{extra}"
    if guessed is None:
        raise MossepError(f"{path}: ClearerVoice checkpoints do not store their sample rate and the name "
                          "does not name one rate (8k or 16k); pass --model-rate 8000 or --model-rate 16000")
    return guessed[0], f"inferred from the name {guessed[1]!r}"


def extract_state(obj: object, where: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The model state dict of a loaded container, with `module.` stripped and official names mapped
    onto mossep's module tree; also notes about the container."""
    notes: list[str] = []
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state = obj["model"]
        extras = [k for k in obj if k != "model"]
        unknown = [k for k in extras if k not in CONTAINER_EXTRAS]
        if unknown:
            raise MossepError(f"{where}: unexpected entries beside 'model': {', '.join(map(str, unknown))}")
        info = ", ".join(f"{k} {obj[k]}" for k in ("epoch", "step") if isinstance(obj.get(k), (int, float)))
        notes.append("training container" + (f" ({info})" if info else "") + "; optimizer state ignored")
    elif isinstance(obj, Mapping):
        state = obj
        notes.append("bare state dict")
    else:
        raise MossepError(f"{where}: not a checkpoint dictionary (got {type(obj).__name__})")
    return rename_keys(state, PREFIX_MAP, where, strip_module=True), notes


def rename_keys(state: Mapping, prefix_map: tuple[tuple[str, str], ...], where: str,
                strip_module: bool = False) -> dict[str, torch.Tensor]:
    """Official state-dict names -> mossep's: the first matching (official prefix, mossep prefix) pair of
    `prefix_map` is replaced (list longer prefixes first); a key that matches none is an error. strip_module:
    first remove DistributedDataParallel's `module.` prefix."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise MossepError(f"{where}: state dict entry {key!r} is not a tensor")
        name = key.removeprefix("module.") if strip_module else key
        for official, ours in prefix_map:
            if name.startswith(official):
                name = ours + name[len(official):]
                break
        else:
            starts = ", ".join(dict.fromkeys(o.split(".")[0] + "." for o, _ in prefix_map))
            raise MossepError(f"{where}: unexpected key {key!r} (MossFormer2 keys start with {starts}"
                              + (" optionally after 'module.')" if strip_module else ")"))
        if name in out:
            raise MossepError(f"{where}: key {key!r} appears both with and without the 'module.' prefix")
        out[name] = value
    return out


def official_name(name: str) -> str:
    """mossep module path -> ClearerVoice state-dict key (without any `module.` prefix)."""
    for official, ours in PREFIX_MAP:
        if name.startswith(ours):
            return official + name[len(ours):]
    return name


def official_state_dict(model: Separator) -> dict[str, torch.Tensor]:
    """The model's state dict under ClearerVoice names, in module order (as the official code saves it)."""
    return {official_name(k): v for k, v in model.state_dict().items()}


def infer_config(state: Mapping[str, torch.Tensor], sample_rate: int, where: str) -> ModelConfig:
    """Depth and widths from tensor shapes (group size 256 and the FSMN depth 2 are fixed in the code)."""

    def shape(key: str, ndim: int) -> tuple[int, ...]:
        if key not in state:
            raise MossepError(f"{where}: not a MossFormer2 checkpoint (no tensor {official_name(key)!r})")
        if state[key].ndim != ndim:
            raise MossepError(f"{where}: {official_name(key)} has shape {tuple(state[key].shape)}; expected {ndim} dimensions")
        return tuple(state[key].shape)

    n_enc, _, kernel = shape("encoder.conv1d.weight", 3)
    d_model = shape("mask_net.conv1d_encoder.weight", 3)[0]
    out_ch = shape("mask_net.conv1d_out.weight", 3)[0]
    indices = {int(m.group(2)) for k in state if (m := re.match(re.escape(STACK) + r"(layers|fsmn)\.(\d+)\.", k))}
    if not indices:
        raise MossepError(f"{where}: not a MossFormer2 checkpoint (no {STACK}layers.* tensors)")
    l0, f0 = STACK + "layers.0.", STACK + "fsmn.0."
    hidden = shape(l0 + "to_hidden.mdl.1.weight", 2)[0]
    try:
        return ModelConfig(
            arch="mossformer2", sample_rate=sample_rate, num_spks=out_ch // d_model, kernel_size=kernel,
            stride=kernel // 2, encoder_dim=n_enc, d_model=d_model, num_blocks=max(indices) + 1,
            query_key_dim=shape(l0 + "to_qk.mdl.1.weight", 2)[0], expansion_factor=hidden / d_model,
            conv_kernel_size=shape(l0 + "to_hidden.mdl.3.sequential.1.conv.weight", 3)[-1],
            rotary_dim=2 * shape(l0 + "rotary_pos_emb.freqs", 1)[0], decoder_bias="decoder.bias" in state,
            fsmn_dim=shape(f0 + "conv1.0.weight", 3)[0],
            fsmn_lorder=(shape(f0 + "gated_fsmn.fsmn.conv.conv1.weight", 4)[2] + 1) // 2,
        )
    except ValueError as e:
        raise MossepError(f"{where}: inconsistent tensor shapes ({e})") from None


def check_declared(declared: ModelConfig, found: ModelConfig, where: str, names: Mapping[str, str]) -> None:
    """A configuration file's values must equal what the tensor shapes say (`found`, from infer_config).
    names: ModelConfig field -> the configuration file's key, for the fields to compare."""
    for field_name, key in names.items():
        want, got = getattr(declared, field_name), getattr(found, field_name)
        if want != got:
            raise MossepError(f"{where}: the configuration says {key} = {want} but the weights have {got}")


def load_clearvoice(path: str | Path, sample_rate: int | None = None) -> tuple[Separator, list[str]]:
    """Build and strictly load a MossFormer2 from a ClearerVoice folder or file.

    Returns (model, notes); notes[0] says how the sample rate was chosen ("sample rate inferred from ...").
    """
    path = Path(path)
    if not path.exists():
        raise MossepError(f"{path}: checkpoint not found")
    weights, pointer = resolve_weights(path)
    state, container_notes = extract_state(torch_load_tensors(weights), str(weights))
    rate, rate_how = choose_sample_rate(path, weights, sample_rate)
    cfg = infer_config(state, rate, str(weights))
    model, converted = build_checked(cfg, state, str(weights))
    where = f"ClearerVoice MossFormer2 checkpoint {weights.name}" + (f" (via {pointer})" if pointer else "")
    return model, [f"sample rate {rate_how}", where + ", " + container_notes[0], *converted]
