"""The official ModelScope MossFormer directory: configuration.json + encoder.bin, decoder.bin, masknet.bin."""
from __future__ import annotations

from pathlib import Path

from ..errors import MossepError, reason
from ..models import ModelConfig
from ..models.mossformer import Separator
from .common import build_checked, check_state, json_type, meta_state, read_json_object, torch_load_tensors

FILES = ("configuration.json", "encoder.bin", "decoder.bin", "masknet.bin")
PARTS = (("encoder.bin", "encoder."), ("decoder.bin", "decoder."), ("masknet.bin", "mask_net."))  # file, module


def is_modelscope_dir(path: Path) -> bool:
    """A folder with any of the official files (load_modelscope then names a missing one); a ClearerVoice
    folder (pointer file) is not one."""
    if not path.is_dir() or any((path / p).is_file() for p in ("last_best_checkpoint", "last_checkpoint")):
        return False
    return any((path / name).exists() for name in FILES)


def _value(section: dict, key: str, kind: type, default=None):
    """section[key] (or the default when absent), of JSON type int or number; a bool is neither."""
    if key not in section and default is not None:
        return default
    v = section[key]
    ok = isinstance(v, int) if kind is int else isinstance(v, (int, float))
    if not ok or isinstance(v, bool):
        raise MossepError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {str(v)[:40]!r}")
    return kind(v)


def config_from_modelscope(model_section: dict, sample_rate: int = 8000) -> ModelConfig:
    """Map the `model` section of configuration.json to a ModelConfig (types and bounds checked there)."""
    if not isinstance(model_section, dict):
        raise MossepError(f"the model section must be a JSON object, got a JSON {json_type(model_section)}")
    try:
        k = _value(model_section, "kernel_size", int)
        stride = _value(model_section, "stride", int, k // 2)
        n_in, n_out = _value(model_section, "in_channels", int), _value(model_section, "out_channels", int)
        d = _value(model_section, "d_model", int)
        if stride != k // 2:
            raise MossepError(f"stride {stride} differs from kernel_size // 2 = {k // 2}; the official encoder "
                              "always uses kernel_size // 2, so this configuration cannot be reproduced")
        if not (n_in == n_out == d):
            raise MossepError(f"in_channels ({n_in}), out_channels ({n_out}) and d_model ({d}) must be equal")
        if model_section.get("causal", False) is not False:
            raise MossepError("causal MossFormer is not supported")
        if model_section.get("norm", "ln") not in ("ln", "gln"):
            raise MossepError(f"norm {str(model_section.get('norm'))[:40]!r} is not supported (ln or gln)")
        if not isinstance(model_section.get("bias", False), bool):
            raise MossepError(f"bias must be true or false, got {str(model_section['bias'])[:40]!r}")
        return ModelConfig(
            arch="mossformer", sample_rate=sample_rate, num_spks=_value(model_section, "num_spks", int, 2),
            kernel_size=k, stride=stride, encoder_dim=n_in, d_model=d,
            num_blocks=_value(model_section, "num_blocks", int),
            group_size=_value(model_section, "group_size", int, 256),
            query_key_dim=_value(model_section, "query_key_dim", int, 128),
            expansion_factor=_value(model_section, "expansion_factor", float, 4.0),
            dropout=_value(model_section, "attn_dropout", float, 0.1),
            decoder_bias=model_section.get("bias", False),
        )
    except KeyError as e:
        raise MossepError(f"model section lacks key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise MossepError(reason(e)) from None


def load_modelscope(path: Path) -> tuple[Separator, list[str]]:
    """(model, notes). Each file is checked against the part of the model the configuration describes
    before the model is built."""
    path = Path(path)
    for name in FILES:
        if not (path / name).is_file():
            raise MossepError(f"{path}: official MossFormer directory lacks {name}")
    conf = read_json_object(path / "configuration.json")
    try:
        cfg = config_from_modelscope(conf.get("model"))
    except MossepError as e:
        raise MossepError(f"{path / 'configuration.json'}: {e}") from None
    expected, state, notes = meta_state(cfg), {}, []
    for name, prefix in PARTS:
        part = torch_load_tensors(path / name)
        if name == "masknet.bin" and isinstance(part, dict) and all(
                getattr(part.get(k), "ndim", 0) == 2 for k in ("norm.weight", "norm.bias")):
            # norm "gln" stores [N, 1] affine parameters; it computes the same statistics as GroupNorm(1)
            part = {**part, "norm.weight": part["norm.weight"].reshape(-1), "norm.bias": part["norm.bias"].reshape(-1)}
        own = {k[len(prefix):]: v for k, v in expected.items() if k.startswith(prefix)}
        notes += check_state(own, part, str(path / name))
        state.update({prefix + k: v for k, v in part.items()})
    model, _ = build_checked(cfg, state, str(path))
    return model, notes
