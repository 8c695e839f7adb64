"""Separation metrics: SI-SNR with the best speaker permutation, and improvements over the mixture.

Pure functions on torch tensors (batched, differentiable) with numpy wrappers for evaluation.
Shapes: [..., C, T] for C sources.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

EPS = 1e-8


def si_snr(est: torch.Tensor, ref: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SNR in dB of zero-meaned signals, over the last axis. [..., T] -> [...]."""
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) * ref / ((ref * ref).sum(-1, keepdim=True) + eps)
    noise = est - proj
    return 10 * torch.log10(((proj * proj).sum(-1) + eps) / ((noise * noise).sum(-1) + eps))


def pairwise_si_snr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[..., C, T] x [..., C, T] -> [..., C_est, C_ref] SI-SNR of every estimate against every reference."""
    return si_snr(est.unsqueeze(-2), ref.unsqueeze(-3))


def best_permutation(est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant SI-SNR. Returns (mean SI-SNR over sources [...], perm [..., C]) where
    est[..., perm[i], :] is matched to ref[..., i, :]."""
    scores, perms = permutation_means(pairwise_si_snr(est, ref))
    best, which = scores.max(dim=-1)
    return best, perms[which]


def permutation_means(pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every assignment of estimates to references: pair [..., C_est, C_ref] (a score or cost per pair) ->
    (means [..., P] over each permutation's pairs, perms [P, C]); means[p] = mean_i pair[perms[p, i], i]."""
    C = pair.shape[-1]
    perms = torch.tensor(list(itertools.permutations(range(C))), device=pair.device)  # [P, C]
    return pair[..., perms, torch.arange(C, device=pair.device)].mean(-1), perms


def pit_si_snr_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Negative permutation-invariant SI-SNR, averaged over the batch. est, ref: [B, C, T]."""
    best, _ = best_permutation(est, ref)
    return -best.mean()


SILENT_REF_DB = -40.0  # a reference this far below the mixture counts as silent (one talker alone)


def silence_loss(est: torch.Tensor, mix: torch.Tensor, depth_db: float = 40.0) -> torch.Tensor:
    """Loss of an estimate whose reference is silence: its level against the mixture's, in dB, floored at
    -depth_db (10 log10(|est|^2 / |mix|^2 + 10^(-depth_db/10)), the soft threshold of Wisdom et al.'s MixIT
    loss, made relative to the mixture so that it does not depend on the recording's level). [..., T] -> [...]."""
    ratio = est.pow(2).sum(-1) / (mix.pow(2).sum(-1) + EPS)
    return 10 * torch.log10(ratio + 10 ** (-depth_db / 10))


def pit_loss(est: torch.Tensor, ref: torch.Tensor, mix: torch.Tensor, depth_db: float = 40.0) -> torch.Tensor:
    """Permutation-invariant loss for mixtures where a talker may be absent, averaged over the batch.

    est, ref: [B, C, T]; mix: [B, T]. An estimate matched to a speaking reference costs -SI-SNR; one matched to
    a silent reference (SILENT_REF_DB below the mixture) costs `silence_loss`, so the model learns to output
    silence when fewer talkers speak than it has outputs. With every reference speaking it equals
    pit_si_snr_loss."""
    pair = -pairwise_si_snr(est, ref)  # [B, Ce, Cr]
    silent = ref.pow(2).sum(-1) < 10 ** (SILENT_REF_DB / 10) * mix.pow(2).sum(-1, keepdim=True)  # [B, Cr]
    quiet = silence_loss(est, mix.unsqueeze(-2), depth_db)  # [B, Ce]
    pair = torch.where(silent.unsqueeze(-2), quiet.unsqueeze(-1), pair)
    return permutation_means(pair)[0].min(-1).values.mean()


def si_snr_improvement(est: np.ndarray, ref: np.ndarray, mix: np.ndarray) -> dict[str, float | list[int]]:
    """SI-SNR of the best-permuted estimates and its improvement over using the mixture as every estimate.

    est, ref: [C, T]; mix: [T]. Returns {"si_snr", "si_snri", "perm"} (means over sources, dB).
    """
    e, r, m = (torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64)) for a in (est, ref, mix))
    best, perm = best_permutation(e, r)
    base = si_snr(m.expand_as(r), r).mean()
    return {"si_snr": float(best), "si_snri": float(best - base), "perm": perm.tolist()}


SDR_FILTER_LENGTH = 512  # BSS-eval distortion filter taps (the usual setting; matches the devset reference numbers)


def sdr(est: np.ndarray, ref: np.ndarray, filter_length: int = SDR_FILTER_LENGTH) -> tuple[np.ndarray, list[int]]:
    """BSS-eval SDR (fast_bss_eval) with the permutation that maximises the summed SDR.

    est, ref: [C, T]. Returns (sdr [C] in reference order, perm) where est[perm[i]] is matched to ref[i].
    Undefined cases (a silent or non-finite signal, a singular system) give NaN for every source.
    """
    import fast_bss_eval

    e, r = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if e.shape != r.shape or e.ndim != 2:
        raise ValueError(f"sdr: est {e.shape} and ref {r.shape} must both be [C, T]")
    C = r.shape[0]
    silent = ~np.any(e != 0, axis=-1) | ~np.any(r != 0, axis=-1)
    if silent.any() or not (np.isfinite(e).all() and np.isfinite(r).all()):
        return np.full(C, np.nan), list(range(C))
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            values, perm = fast_bss_eval.sdr(r, e, filter_length=filter_length, return_perm=True)
    except (np.linalg.LinAlgError, ValueError):
        return np.full(C, np.nan), list(range(C))
    return np.asarray(values, dtype=np.float64), [int(p) for p in perm]


def sdr_improvement(est: np.ndarray, ref: np.ndarray, mix: np.ndarray,
                    filter_length: int = SDR_FILTER_LENGTH) -> dict[str, float | list[int]]:
    """SDR of the best-permuted estimates and its improvement over using the mixture as every estimate.

    est, ref: [C, T]; mix: [T]. Returns {"sdr", "sdri", "perm"} (means over sources, dB; NaN where undefined).
    """
    r = np.asarray(ref, dtype=np.float64)
    values, perm = sdr(est, r, filter_length)
    base, _ = sdr(np.broadcast_to(np.asarray(mix, dtype=np.float64), r.shape), r, filter_length)
    return {"sdr": float(values.mean()), "sdri": float(values.mean() - base.mean()), "perm": perm}
