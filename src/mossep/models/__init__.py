from .config import ModelConfig, PRESETS, preset
from .mossformer import MossFormer, build_model

__all__ = ["ModelConfig", "PRESETS", "preset", "MossFormer", "build_model"]
