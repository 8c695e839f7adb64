"""MossFormer2 "standalone" checkpoints as published on Hugging Face (alibabasglab/mossformer2-librimix-2spk,
-wsj0mix-3spk, -whamr-2spk; kit: tests/fixtures/mossformer2_standalone_8k).

A model folder holds `config.json` (one flat JSON object) and the weights twice: `pytorch_model.bin` (the
whole model's state dict) and `encoder.ckpt` / `decoder.ckpt` / `masknet.ckpt` (each part's own state dict).
The folder, `pytorch_model.bin` or one of the three `.ckpt` files may be given; a folder is read from
`pytorch_model.bin` when it has one, else from the three parts. Loading is strict: exactly the official
keys and shapes, read with weights_only, and config.json's width, depth and talker count must agree with
the tensors. The network is the ClearerVoice / ModelScope MossFormer2 under other module names. config_name
"mossformer2-whamr-2spk" selects the forward that decodes the mask net's output directly
(ModelConfig.mask_encoder = False), as the official code does by comparing that exact string.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MossepError
from ..models import ModelConfig
from ..models.mossformer import Separator
from .clearvoice import check_declared, infer_config, rename_keys
from .common import build_checked, read_json_object, torch_load_tensors

CONFIG = "config.json"
WEIGHTS = "pytorch_model.bin"
PARTS = (("encoder.ckpt", "encoder."), ("decoder.ckpt", "decoder."), ("masknet.ckpt", "masknet."))
WHAMR_NAME = "mossformer2-whamr-2spk"  # the official code's switch to decoding the masks directly
# standalone names -> mossep's (longer prefixes first)
PREFIX_MAP = (
    ("encoder.", "encoder."),
    ("decoder.", "decoder."),
    ("masknet.dual_mdl.0.intra_mdl.mdl.flashT.", "mask_net.mdl.intra_mdl.mossformerM."),
    ("masknet.dual_mdl.0.intra_mdl.mdl.norm.norm.", "mask_net.mdl.intra_mdl.norm."),
    ("masknet.dual_mdl.0.intra_norm.", "mask_net.mdl.intra_norm."),
    ("masknet.", "mask_net."),
)
# config.json keys that change the network, with the only values mossep (and every published model) uses
FIXED = {"encoder_in_nchannels": 1, "masknet_numlayers": 1, "masknet_norm": "ln",
         "masknet_useextralinearlayer": False, "masknet_extraskipconnection": True}
# ModelConfig field -> config.json key, compared with what the tensors say
DECLARED = {"encoder_dim": "encoder_out_nchannels", "num_spks": "masknet_numspks", "num_blocks": "intra_numlayers",
            "kernel_size": "encoder_kernel_size"}


def standalone_files(path: Path) -> tuple[Path, Path | None] | None:
    """(model folder, the weights file pointed at or None for the folder's choice) when `path` is a standalone
    folder or one of its weight files; None otherwise."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG).is_file():
        return None
    if path.is_dir():
        names = [WEIGHTS] + [p for p, _ in PARTS]
        return (folder, None) if any((folder / n).is_file() for n in names) else None
    if path.name == WEIGHTS or path.name in dict(PARTS):
        return folder, path
    return None


def is_standalone(path: Path) -> bool:
    return standalone_files(path) is not None


def config_from_standalone(conf: dict, where: str) -> ModelConfig:
    """config.json -> ModelConfig (width W, depth N, talkers C, kernel, rate, and the WHAMR! forward)."""
    def value(key: str, kind: type):
        if key not in conf:
            raise MossepError(f"{where}: lacks key {key!r}")
        v = conf[key]
        if kind is int and (type(v) is not int or v <= 0):
            raise MossepError(f"{where}: {key} must be a positive integer, got {v!r}")
        if kind is not int and type(v) is not kind:
            raise MossepError(f"{where}: {key} must be a {kind.__name__}, got {v!r}")
        return v

    for key, wanted in FIXED.items():
        if value(key, type(wanted)) != wanted:
            raise MossepError(f"{where}: {key} = {conf[key]!r} is not supported (every published model has "
                              f"{wanted!r})")
    width, kernel = value("encoder_out_nchannels", int), value("encoder_kernel_size", int)
    try:
        return ModelConfig(arch="mossformer2", sample_rate=value("sample_rate", int),
                           num_spks=value("masknet_numspks", int), kernel_size=kernel, stride=kernel // 2,
                           encoder_dim=width, d_model=width, num_blocks=value("intra_numlayers", int),
                           mask_encoder=value("config_name", str) != WHAMR_NAME)
    except ValueError as e:
        raise MossepError(f"{where}: {e}") from None


def read_weights(folder: Path, weights: Path | None) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict under the standalone names, and which file(s) it came from."""
    if weights is None and (folder / WEIGHTS).is_file():
        weights = folder / WEIGHTS
    if weights is not None and weights.name == WEIGHTS:
        state = torch_load_tensors(weights)
        if not isinstance(state, dict):
            raise MossepError(f"{weights}: not a state dict (got {type(state).__name__})")
        return state, WEIGHTS
    state = {}
    for name, prefix in PARTS:
        part = torch_load_tensors(folder / name)
        if not isinstance(part, dict):
            raise MossepError(f"{folder / name}: not a state dict (got {type(part).__name__})")
        state.update({f"{prefix}{k}": v for k, v in part.items()})
    return state, " + ".join(n for n, _ in PARTS)


def load_standalone(path: str | Path, sample_rate: int | None = None) -> tuple[Separator, dict, list[str]]:
    """Build and strictly load a standalone MossFormer2. Returns (model, config.json's content, notes)."""
    found = standalone_files(Path(path))
    if found is None:
        raise MossepError(f"{path}: not a MossFormer2 standalone model ({CONFIG} with {WEIGHTS} or the .ckpt files)")
    folder, weights = found
    conf = read_json_object(folder / CONFIG)
    cfg = config_from_standalone(conf, str(folder / CONFIG))
    if sample_rate is not None and sample_rate != cfg.sample_rate:
        raise MossepError(f"{folder / CONFIG}: the model runs at {cfg.sample_rate} Hz; --model-rate {sample_rate} "
                          "contradicts it")
    raw, source = read_weights(folder, weights)
    where = str(folder / source)
    state = rename_keys(raw, PREFIX_MAP, where)
    check_declared(cfg, infer_config(state, cfg.sample_rate, where), f"{folder / CONFIG} and {source}", DECLARED)
    model, dtype_notes = build_checked(cfg, state, where)
    forward = ("masks decoded directly (WHAMR! forward)" if not cfg.mask_encoder
               else "masks applied to the encoder output")
    notes = [f"sample rate {cfg.sample_rate} Hz from {CONFIG}",
             f"MossFormer2 standalone {conf.get('config_name')!r} from {source}; {forward}", *dtype_notes]
    return model, conf, notes


def standalone_state_dict(model: Separator) -> dict[str, torch.Tensor]:
    """The model's state dict under the standalone (pytorch_model.bin) names, in module order."""
    def name(key: str) -> str:
        for official, ours in PREFIX_MAP:
            if key.startswith(ours):
                return official + key[len(ours):]
        return key

    return {name(k): v for k, v in model.state_dict().items()}
