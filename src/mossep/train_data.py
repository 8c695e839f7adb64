"""Where training batches come from: dynamic mixing of single-speaker folders, fixed mixture sets, or both.

Every source is a pure function of (seed, step, rank): batch_rng gives each step of each process its own
generator, so resuming at step k sees the same batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import dynamic_mix as dm
from .datasets import find_items, read_audio
from .errors import MossepError


@dataclass
class FixedMixtures:
    """Mixtures with references from a dataset layout (datasets.find_items); random crops of `segment_samples`."""

    mixes: list[np.ndarray]
    sources: list[np.ndarray]  # each [C, T]
    segment_samples: int

    @classmethod
    def load(cls, roots: list[Path], sample_rate: int, num_spks: int, segment_samples: int) -> "FixedMixtures":
        mixes, sources = [], []
        for root in roots:
            _, items = find_items(root)
            for item in items:
                if len(item.sources) != num_spks:
                    raise MossepError(f"{item.mix}: has {len(item.sources)} references, the model separates {num_spks}")
                mix, _ = read_audio(item.mix, sample_rate)
                refs = [read_audio(s, sample_rate)[0] for s in item.sources]
                n = min(len(mix), *(len(r) for r in refs))
                mixes.append(mix[:n].astype(np.float32))
                sources.append(np.stack([r[:n] for r in refs]).astype(np.float32))
        return cls(mixes, sources, segment_samples)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = int(rng.integers(len(self.mixes)))
        mix, src, n = self.mixes[i], self.sources[i], self.segment_samples
        if len(mix) >= n:
            start = int(rng.integers(0, len(mix) - n + 1))
            return mix[start : start + n], src[:, start : start + n]
        pad = n - len(mix)
        return np.pad(mix, (0, pad)), np.pad(src, ((0, 0), (0, pad)))


@dataclass
class DynamicMixing:
    speakers: dict[str, list[np.ndarray]]
    spec: dm.MixSpec
    sample_rate: int

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return dm.make_mixture(self.speakers, self.spec, rng, self.sample_rate)


def make_batch(sources: list, batch_size: int, seed: int, step: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mix [B, T], refs [B, C, T]); with several sources each mixture picks one uniformly."""
    rng = dm.batch_rng(seed, step, rank)
    pairs = []
    for _ in range(batch_size):
        src = sources[0] if len(sources) == 1 else sources[int(rng.integers(len(sources)))]
        pairs.append(src.sample(rng))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
