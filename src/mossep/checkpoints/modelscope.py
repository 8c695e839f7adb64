"""The official ModelScope MossFormer directory: configuration.json + encoder.bin, decoder.bin, masknet.bin."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import MossepError
from ..models import ModelConfig, build_model
from ..models.mossformer import Separator
from .common import load_strict, torch_load_tensors

FILES = ("configuration.json", "encoder.bin", "decoder.bin", "masknet.bin")


def is_modelscope_dir(path: Path) -> bool:
    """A folder with any of the official files (load_modelscope then names a missing one); a ClearerVoice
    folder (pointer file) is not one."""
    if not path.is_dir() or any((path / p).is_file() for p in ("last_best_checkpoint", "last_checkpoint")):
        return False
    return any((path / name).exists() for name in FILES)


def config_from_modelscope(model_section: dict, sample_rate: int = 8000) -> ModelConfig:
    """Map the `model` section of configuration.json to a ModelConfig."""
    try:
        k = int(model_section["kernel_size"])
        stride = int(model_section.get("stride", k // 2))
        n_in, n_out, d = int(model_section["in_channels"]), int(model_section["out_channels"]), int(model_section["d_model"])
        if stride != k // 2:
            raise MossepError(f"stride {stride} differs from kernel_size // 2 = {k // 2}; the official encoder "
                              "always uses kernel_size // 2, so this configuration cannot be reproduced")
        if not (n_in == n_out == d):
            raise MossepError(f"in_channels ({n_in}), out_channels ({n_out}) and d_model ({d}) must be equal")
        if model_section.get("causal", False):
            raise MossepError("causal MossFormer is not supported")
        if model_section.get("norm", "ln") not in ("ln", "gln"):
            raise MossepError(f"norm {model_section.get('norm')!r} is not supported (ln or gln)")
        return ModelConfig(
            arch="mossformer", sample_rate=sample_rate, num_spks=int(model_section.get("num_spks", 2)),
            kernel_size=k, stride=stride, encoder_dim=n_in, d_model=d, num_blocks=int(model_section["num_blocks"]),
            group_size=int(model_section.get("group_size", 256)), query_key_dim=int(model_section.get("query_key_dim", 128)),
            expansion_factor=float(model_section.get("expansion_factor", 4.0)),
            dropout=float(model_section.get("attn_dropout", 0.1)), decoder_bias=bool(model_section.get("bias", False)),
        )
    except KeyError as e:
        raise MossepError(f"configuration.json: model section lacks key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise MossepError(f"configuration.json: {e}") from None


def load_modelscope(path: Path) -> Separator:
    path = Path(path)
    for name in FILES:
        if not (path / name).is_file():
            raise MossepError(f"{path}: official MossFormer directory lacks {name}")
    try:
        conf = json.loads((path / "configuration.json").read_text())
        section = conf["model"]
    except Exception as e:
        raise MossepError(f"{path / 'configuration.json'}: not a ModelScope configuration ({e})") from None
    try:
        cfg = config_from_modelscope(section)
    except MossepError as e:
        raise MossepError(f"{path / 'configuration.json'}: {e}") from None
    model = build_model(cfg)
    for name, sub in (("encoder.bin", model.encoder), ("decoder.bin", model.decoder), ("masknet.bin", model.mask_net)):
        state = torch_load_tensors(path / name)
        if name == "masknet.bin" and isinstance(state, dict) and getattr(state.get("norm.weight"), "ndim", 1) == 2:
            # norm "gln" stores [N, 1] affine parameters; it computes the same statistics as GroupNorm(1)
            state = {**state, "norm.weight": state["norm.weight"].reshape(-1), "norm.bias": state["norm.bias"].reshape(-1)}
        load_strict(sub, state, str(path / name))
    return model
