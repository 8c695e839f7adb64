"""The ModelScope MossFormer2 directory (damo/speech_mossformer2_separation_temporal_8k; kit:
tests/fixtures/mossformer2_modelscope_8k): `configuration.json` + `pytorch_model.pt`.

`pytorch_model.pt` is one flat state dict with exactly the ClearerVoice MossFormer2 names (no `module.`
prefix, no training container). The `model` section of configuration.json gives the width, depth, kernel
and talker count (absent keys take the official constructor's defaults) and must agree with the tensors.
The official pipeline accepts only 8000 Hz input, so that is the model's rate.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MossepError
from ..models import ModelConfig
from ..models.mossformer import Separator
from .clearvoice import PREFIX_MAP, check_declared, infer_config, rename_keys
from .common import build_checked, read_json_object, torch_load_tensors

CONFIG = "configuration.json"
WEIGHTS = "pytorch_model.pt"
MODEL_TYPE = "speech_mossformer2_separation_temporal_8k"
SAMPLE_RATE = 8000
# the official constructor's defaults (keys absent from the model section take these)
DEFAULTS = {"in_channels": 512, "out_channels": 512, "num_blocks": 24, "kernel_size": 16, "num_spks": 2,
            "norm": "ln", "skip_around_intra": True, "use_global_pos_enc": True}
# values the official code could be given but mossep (and the published model) does not use
FIXED = {"norm": "ln", "skip_around_intra": True, "use_global_pos_enc": True}
DECLARED = {"encoder_dim": "in_channels", "num_spks": "num_spks", "num_blocks": "num_blocks",
            "kernel_size": "kernel_size"}


def _model_type(folder: Path) -> str | None:
    try:
        section = read_json_object(folder / CONFIG).get("model")
    except MossepError:
        return None
    return section.get("type") if isinstance(section, dict) else None


def modelscope2_folder(path: Path) -> Path | None:
    """The model folder when `path` is a ModelScope MossFormer2 folder (configuration.json with
    pytorch_model.pt, or naming the MossFormer2 model type) or its pytorch_model.pt; else None."""
    path = Path(path)
    if path.is_file():
        return path.parent if path.name == WEIGHTS and (path.parent / CONFIG).is_file() else None
    if not path.is_dir() or not (path / CONFIG).is_file():
        return None
    return path if (path / WEIGHTS).is_file() or _model_type(path) == MODEL_TYPE else None


def is_modelscope2(path: Path) -> bool:
    return modelscope2_folder(path) is not None


def config_from_modelscope2(section: dict, where: str) -> ModelConfig:
    """The `model` section of configuration.json -> ModelConfig."""
    values = {**DEFAULTS, **{k: v for k, v in section.items() if k in DEFAULTS}}
    for key in ("in_channels", "out_channels", "num_blocks", "kernel_size", "num_spks"):
        if type(values[key]) is not int or values[key] <= 0:
            raise MossepError(f"{where}: {key} must be a positive integer, got {values[key]!r}")
    for key, wanted in FIXED.items():
        if values[key] != wanted:
            raise MossepError(f"{where}: {key} = {values[key]!r} is not supported (the published model has {wanted!r})")
    if values["in_channels"] != values["out_channels"]:
        raise MossepError(f"{where}: in_channels ({values['in_channels']}) and out_channels "
                          f"({values['out_channels']}) differ; the official code works only when they are equal")
    k, width = values["kernel_size"], values["in_channels"]
    try:
        return ModelConfig(arch="mossformer2", sample_rate=SAMPLE_RATE, num_spks=values["num_spks"], kernel_size=k,
                           stride=k // 2, encoder_dim=width, d_model=width, num_blocks=values["num_blocks"])
    except ValueError as e:
        raise MossepError(f"{where}: {e}") from None


def load_modelscope2(path: str | Path, sample_rate: int | None = None) -> tuple[Separator, dict, list[str]]:
    """Build and strictly load the ModelScope MossFormer2. Returns (model, configuration.json, notes)."""
    folder = modelscope2_folder(Path(path))
    if folder is None:
        raise MossepError(f"{path}: not a ModelScope MossFormer2 folder ({CONFIG} + {WEIGHTS})")
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        raise MossepError(f"{path}: the ModelScope MossFormer2 model runs at {SAMPLE_RATE} Hz")
    conf = read_json_object(folder / CONFIG)
    section = conf.get("model")
    if not isinstance(section, dict):
        raise MossepError(f"{folder / CONFIG}: no 'model' section")
    if section.get("type") != MODEL_TYPE:
        raise MossepError(f"{folder / CONFIG}: model type {section.get('type')!r} is not {MODEL_TYPE!r}")
    cfg = config_from_modelscope2(section, str(folder / CONFIG))
    weights = folder / WEIGHTS
    raw = torch_load_tensors(weights)
    if not isinstance(raw, dict):
        raise MossepError(f"{weights}: not a state dict (got {type(raw).__name__})")
    state = rename_keys(raw, PREFIX_MAP, str(weights))
    check_declared(cfg, infer_config(state, SAMPLE_RATE, str(weights)), f"{folder / CONFIG} and {WEIGHTS}", DECLARED)
    model, dtype_notes = build_checked(cfg, state, str(weights))
    return model, conf, [f"official ModelScope MossFormer2, {SAMPLE_RATE} Hz (the pipeline accepts no other rate)",
                         *dtype_notes]

