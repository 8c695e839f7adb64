"""Model configuration shared by MossFormer and MossFormer2."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any

ARCHITECTURES = ("mossformer", "mossformer2")
# Upper bounds on every size, far above any published model (the largest use 24 blocks of width 512, 2-3
# speakers, groups of 256 frames). The one place for them: a configuration read from an untrusted file is
# checked here before any module is built (mossep.checkpoints.common.check_config then compares the model it
# describes with the tensors present), and group_size and sample_rate, which no tensor shape records, bound the
# memory a forward pass needs.
LIMITS: dict[str, int] = {
    "sample_rate": 384_000, "num_spks": 16, "kernel_size": 4096, "stride": 4096, "encoder_dim": 8192,
    "d_model": 8192, "num_blocks": 256, "group_size": 4096, "query_key_dim": 4096, "expansion_factor": 16,
    "conv_kernel_size": 1025, "rotary_dim": 4096, "fsmn_dim": 8192, "fsmn_lorder": 1024,
}
_KINDS = {"int": Integral, "float": Real, "bool": bool, "str": str}


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mossformer"
    sample_rate: int = 8000
    num_spks: int = 2
    kernel_size: int = 16  # encoder/decoder kernel (samples)
    stride: int = 8  # encoder/decoder hop (samples)
    encoder_dim: int = 512  # N: encoder filters
    d_model: int = 512  # width of the block stack
    num_blocks: int = 24
    group_size: int = 256  # local-attention chunk (frames)
    query_key_dim: int = 128
    expansion_factor: float = 4.0
    conv_kernel_size: int = 17  # depthwise conv in every FFConvM
    rotary_dim: int = 32
    dropout: float = 0.1
    decoder_bias: bool = False
    fsmn_dim: int = 256  # MossFormer2 gated FSMN inner width
    fsmn_lorder: int = 20  # MossFormer2 FSMN memory order (kernel 2*lorder-1)
    # decoder input: encoder output times each mask (True), or the mask net's output itself (False, as in the
    # published MossFormer2 WHAMR! model)
    mask_encoder: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):  # values from JSON or YAML: "24", 24.0, true, null and lists are all refused
            value = getattr(self, f.name)
            if not isinstance(value, _KINDS[f.type]) or (isinstance(value, bool) and f.type != "bool"):
                raise ValueError(f"model config: {f.name} must be {'a number' if f.type == 'float' else f.type}, "
                                 f"got {str(value)[:40]!r} ({type(value).__name__})")
            if f.type in ("int", "float"):  # numpy scalars become plain numbers (the config is saved as JSON)
                object.__setattr__(self, f.name, int(value) if f.type == "int" else float(value))
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r} (known: {', '.join(ARCHITECTURES)})")
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if not (0 < value <= limit):  # also false for NaN
                span = f"1..{limit}" if isinstance(value, int) else f"(0, {limit}]"
                raise ValueError(f"model config: {name} must be in {span}, got {value}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % 2 or self.query_key_dim < self.rotary_dim:
            raise ValueError("model config: d_model must be even and query_key_dim >= rotary_dim")

    @property
    def min_samples(self) -> int:
        """Shortest input the encoder accepts."""
        return self.kernel_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}")
        return cls(**d)


# Size presets. "paper-*" follow the MossFormer paper's S/M/L; the small ones train on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(encoder_dim=64, d_model=64, num_blocks=2, query_key_dim=32, group_size=64, kernel_size=16, stride=8),
    "cpu-small": dict(encoder_dim=128, d_model=128, num_blocks=4, query_key_dim=64, kernel_size=16, stride=8),
    "cpu-base": dict(encoder_dim=256, d_model=256, num_blocks=8, query_key_dim=128, kernel_size=16, stride=8),
    "paper-s": dict(encoder_dim=512, d_model=512, num_blocks=8),
    "paper-m": dict(encoder_dim=512, d_model=512, num_blocks=16),
    "paper-l": dict(encoder_dim=512, d_model=512, num_blocks=24),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A size preset's config; NAME or NAME:ARCH (e.g. "paper-l:mossformer2": that size in another architecture)."""
    name, _, arch = name.partition(":")
    if arch:
        overrides.setdefault("arch", arch)
    if name not in PRESETS:
        raise ValueError(f"unknown model size {name!r} (known: {', '.join(PRESETS)})")
    return ModelConfig(**{**PRESETS[name], **overrides})
