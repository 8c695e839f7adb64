"""Dynamic mixing on the training device (`mossep train` with mixing: device): the whole corpus, and
speed-perturbed copies of it made once with soxr, held in one flat tensor there, and every batch drawn by
indexing, so a GPU is not left waiting for CPU-side mixing.

Draws (all from the caller's torch.Generator on the device): C distinct speakers per mixture, a random
utterance of each in a random speed copy, a random crop, a level uniform in -25 +- gain_db/2 dBFS per source,
and (polarity) each source inverted with probability 1/2.
"""
from __future__ import annotations

import numpy as np
import torch

from .datasets import resample


class DeviceMixer:
    """Every utterance (and its speed-perturbed copies) in one flat tensor on `device`; batches by indexing."""

    def __init__(self, speakers: dict[str, list[np.ndarray]], rate: int, segment: int, speeds: list[float],
                 device: torch.device | str):
        per_variant: list[list[np.ndarray]] = [[] for _ in speeds]
        spk_first, spk_count = [], []
        for utts in speakers.values():
            spk_first.append(len(per_variant[0]))
            spk_count.append(len(utts))
            for x in utts:
                for v, f in enumerate(speeds):
                    y = x if f == 1.0 else resample(x.astype(np.float32), rate, int(round(rate / f)))
                    if len(y) < segment + 1:  # short utterance: pad with silence to one segment
                        y = np.pad(y, (0, segment + 1 - len(y)))
                    per_variant[v].append(np.asarray(y, dtype=np.float32))
        flat = [y for variant in per_variant for y in variant]
        lengths = np.array([len(y) for y in flat])
        self.variants, self.utterances = len(speeds), len(per_variant[0])
        self.flat = torch.from_numpy(np.concatenate(flat)).to(device)
        self.offsets = torch.from_numpy(np.cumsum(lengths) - lengths).to(device)  # [V * U]
        self.lengths = torch.from_numpy(lengths).to(device)
        self.spk_first = torch.tensor(spk_first, device=device)  # [S]
        self.spk_count = torch.tensor(spk_count, device=device)
        self.segment, self.rate, self.device = segment, rate, torch.device(device)

    def sources(self, size: int, gen: torch.Generator, gain_db: float, num_spks: int = 2,
                polarity: bool = True) -> torch.Tensor:
        """[size, num_spks, segment] sources of distinct speakers (the mixture is their sum)."""
        d, S, T = self.device, len(self.spk_first), self.segment
        if S < num_spks:
            raise ValueError(f"{num_spks} talkers per mixture need {num_spks} speakers, the corpus has {S}")
        spk = torch.rand(size, S, device=d, generator=gen).argsort(-1)[:, :num_spks]  # C distinct, uniformly
        utt = self.spk_first[spk] + (torch.rand(spk.shape, device=d, generator=gen) * self.spk_count[spk]).long()
        var = torch.randint(0, self.variants, spk.shape, device=d, generator=gen)
        slot = var * self.utterances + utt
        room = self.lengths[slot] - T
        start = self.offsets[slot] + (torch.rand(spk.shape, device=d, generator=gen) * room).long()
        src = self.flat[start.unsqueeze(-1) + torch.arange(T, device=d)]  # [B, C, T]
        rms = src.pow(2).mean(-1, keepdim=True).sqrt() + 1e-8
        level = -25.0 + (torch.rand(size, num_spks, 1, device=d, generator=gen) - 0.5) * gain_db
        src = src / rms * 10 ** (level / 20)
        if polarity:
            src = src * (torch.randint(0, 2, (size, num_spks, 1), device=d, generator=gen) * 2 - 1)
        return src
