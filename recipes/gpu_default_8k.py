"""Train (or continue) the default 8 kHz MossFormer on one GPU, with the dynamic mixing done on the GPU.

The CPU recipe (`mossep train -c recipes/default-8k.yaml`) mixes on the CPU, two mixtures a step. A GPU is
idle most of that time, so this script keeps the whole training corpus on the GPU (plus speed-perturbed
copies made once with soxr) and draws every batch there: random speaker pairs, random crops, +-gain_db
levels, and in a fraction of mixtures one talker starting late or stopping early (turn-taking, as in real
conversations). Optionally (off by default, see --reverb, --noise, --eq and mossep.augment) a fraction of
mixtures is made to sound like real recordings: a synthetic room (targets: the reverberant images), additive
noise or mains hum (targets: the clean sources) or a random channel EQ (targets: the equalised sources).
The learning rate warms up, then follows a cosine over the *time* budget, so a run of any length ends annealed.
Validation uses the CPU recipe's fixed held-out mixtures (mossep.dynamic_mix, seed 20231; clean, whatever the
augmentations): the first 48 are exactly the CPU run's validation set, so both learning curves compare.

    python recipes/gpu_default_8k.py --init weights/default.safetensors --minutes 7 --out runs/gpu
    python recipes/gpu_default_8k.py --bench --batches 16 32 64 128      # ms per step, then exit
    python recipes/gpu_default_8k.py --init weights/default.safetensors --reverb 0.3 --noise 0.3 --eq 0.2 ...

Writes OUT/best.safetensors (best validation SI-SNRi, mossep's format with metadata), OUT/final.safetensors,
OUT/log.csv. See weights/README.md for the run that produced the shipped checkpoint.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mossep import augment as aug  # noqa: E402
from mossep import dynamic_mix as dm  # noqa: E402
from mossep.checkpoints import load_checkpoint  # noqa: E402
from mossep.checkpoints.native import save_native  # noqa: E402
from mossep.datasets import resample  # noqa: E402
from mossep.metrics import pit_si_snr_loss  # noqa: E402
from mossep.models import build_model, preset  # noqa: E402
from mossep.train import si_snri_per_mixture  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


class GpuMixer:
    """Every utterance (and its speed-perturbed copies) in one flat tensor on the device; batches by indexing."""

    def __init__(self, speakers: dict[str, list[np.ndarray]], rate: int, segment: int, speeds: list[float],
                 device: torch.device):
        flat, offsets, lengths, spk_first, spk_count = [], [], [], [], []
        pos = 0
        self.variants = len(speeds)
        per_variant: list[list[np.ndarray]] = [[] for _ in speeds]
        for utts in speakers.values():
            spk_first.append(len(per_variant[0]))
            spk_count.append(len(utts))
            for x in utts:
                for v, f in enumerate(speeds):
                    y = x if f == 1.0 else resample(x.astype(np.float32), rate, int(round(rate / f)))
                    if len(y) < segment + 1:  # short utterance: pad with silence to one segment
                        y = np.pad(y, (0, segment + 1 - len(y)))
                    per_variant[v].append(np.asarray(y, dtype=np.float32))
        self.utterances = len(per_variant[0])
        for v in range(self.variants):
            for y in per_variant[v]:
                flat.append(y)
                offsets.append(pos)
                lengths.append(len(y))
                pos += len(y)
        self.flat = torch.from_numpy(np.concatenate(flat)).to(device)
        self.offsets = torch.tensor(offsets, device=device)  # [V * U]
        self.lengths = torch.tensor(lengths, device=device)
        self.spk_first = torch.tensor(spk_first, device=device)  # [S]
        self.spk_count = torch.tensor(spk_count, device=device)
        self.segment = segment
        self.rate = rate
        self.device = device

    def batch(self, size: int, gen: torch.Generator, gain_db: float, partial: float, num_spks: int = 2,
              polarity: bool = True, reverb: float = 0.0, noise: float = 0.0, eq: float = 0.0,
              rt60: tuple[float, float] = (0.2, 0.8), snr_db: tuple[float, float] = (5.0, 30.0)):
        """(mix [B, T], sources [B, C, T]) with C distinct speakers per mixture; sources are the training targets.

        polarity: each source is inverted with probability 1/2 (a recording's polarity is arbitrary; a model
        trained on one polarity only separates the inverted mixture differently, and worse or better at random).
        reverb / noise / eq: the probability that a mixture gets, in this order (mossep.augment):
        - reverb: each source through its own synthetic room impulse response (one RT60 uniform in `rt60` s per
          mixture, its level kept); the targets are these reverberant images (separation, not dereverberation);
        - eq: one random tilt/EQ curve per mixture on all its sources; the targets are the equalised sources;
        - noise: white/pink/brown noise or mains hum added to the mixture only, at an SNR (against the
          mixture) uniform in `snr_db`; the targets stay the noise-free sources, so mix != sources.sum(1).
        With all three 0 (the default) no extra random numbers are drawn: the batches are exactly those of
        the recipe before the augmentations existed. Their random numbers are drawn after all the others, so
        turning them on keeps the same speakers, crops, levels and polarities.
        """
        d, S, T = self.device, len(self.spk_first), self.segment
        first = torch.randint(0, S, (size, 1), device=d, generator=gen)
        hi = S if num_spks == 2 else S // num_spks  # steps in [1, hi) keep the C speakers distinct
        steps = torch.randint(1, hi, (size, num_spks - 1), device=d, generator=gen)
        spk = (first + torch.cumsum(torch.cat([torch.zeros_like(first), steps], 1), 1)) % S
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
        if partial > 0:  # one talker present over only part of the segment (start late or stop early)
            which = torch.rand(size, device=d, generator=gen) < partial
            keep = 0.4 + 0.5 * torch.rand(size, 1, device=d, generator=gen)  # fraction of the segment kept
            t = torch.arange(T, device=d) / T
            ramp = ((keep - t) * T / 400).clamp(0, 1)  # 50 ms fade at the edge
            late = torch.rand(size, 1, device=d, generator=gen) < 0.5
            env = torch.where(late, ramp.flip(-1), ramp)
            c = torch.randint(0, num_spks, (size,), device=d, generator=gen)
            mask = torch.ones(size, num_spks, T, device=d)
            mask[torch.arange(size, device=d), c] = env
            masked = src * mask
            # a short (padded) utterance may lie wholly in the faded part: keep such mixtures whole
            alive = (masked.pow(2).mean(-1) > 1e-2 * src.pow(2).mean(-1)).all(-1)
            src = torch.where((which & alive)[:, None, None], masked, src)
        mix, src = aug.augment_batch(src, gen, self.rate, reverb, eq, noise, rt60, snr_db)
        peak = mix.abs().amax(-1).clamp(min=0.99) / 0.99
        return mix / peak[:, None], src / peak[:, None, None]


def zero_grads_if_nonfinite_(params: list[torch.Tensor], grad_norm: torch.Tensor) -> None:
    """Zero every gradient when the total gradient norm is not finite, without a host-device sync (the test
    stays a tensor on the device), so a bad batch cannot put NaN into the weights or Adam's moments."""
    bad = ~torch.isfinite(grad_norm)
    for q in params:
        if q.grad is not None:
            q.grad.masked_fill_(bad, 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", default=None, help="checkpoint to continue from (else --preset from scratch)")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--train", nargs="+", default=[str(CORPUS / "librispeech-train-clean-100")])
    p.add_argument("--valid", nargs="+", default=[str(CORPUS / "librispeech-test-other"), str(CORPUS / "vctk")])
    p.add_argument("--out", default="runs/gpu-default-8k")
    p.add_argument("--minutes", type=float, default=7.0, help="training time budget (the lr schedule spans it)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--final-lr", type=float, default=0.02, help="fraction of --lr reached at the end")
    p.add_argument("--segment", type=float, default=4.0)
    p.add_argument("--speeds", type=float, nargs="+", default=[0.94, 0.97, 1.0, 1.03, 1.06])
    p.add_argument("--gain-db", type=float, default=5.0)
    p.add_argument("--partial", type=float, default=0.2)
    p.add_argument("--polarity", action=argparse.BooleanOptionalAction, default=True,
                   help="invert each source with probability 1/2")
    p.add_argument("--reverb", type=float, default=0.0,
                   help="probability per mixture of a synthetic room (targets: the reverberant images)")
    p.add_argument("--rt60", type=float, nargs=2, default=[0.2, 0.8], metavar=("LO", "HI"),
                   help="reverberation time range, seconds")
    p.add_argument("--noise", type=float, default=0.0,
                   help="probability per mixture of additive white/pink/brown noise or hum (targets: clean)")
    p.add_argument("--snr", type=float, nargs=2, default=[5.0, 30.0], metavar=("LO", "HI"),
                   help="noise SNR range against the mixture, dB")
    p.add_argument("--eq", type=float, default=0.0,
                   help="probability per mixture of a random spectral tilt/EQ (targets: the equalised sources)")
    p.add_argument("--clip-grad", type=float, default=5.0)
    p.add_argument("--valid-count", type=int, default=256)
    p.add_argument("--valid-every", type=float, default=45.0, help="seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the training forward (validation stays eager); falls back to eager if the "
                        "first compiled step fails")
    p.add_argument("--bench", action="store_true", help="time training steps at --batches and exit")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--tag", default="")
    a = p.parse_args()
    for name in ("reverb", "noise", "eq"):
        if not 0.0 <= getattr(a, name) <= 1.0:
            p.error(f"--{name} is a probability, got {getattr(a, name)}")
    if not 0 < a.rt60[0] <= a.rt60[1] or a.snr[0] > a.snr[1]:
        p.error("--rt60 LO HI needs 0 < LO <= HI and --snr LO HI needs LO <= HI")
    augment = {"reverb": a.reverb, "noise": a.noise, "eq": a.eq, "rt60": tuple(a.rt60), "snr_db": tuple(a.snr)}

    t_start = time.time()
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(a.seed)
    if a.init:
        loaded = load_checkpoint(a.init)
        model, origin = loaded.model, f"continued from {a.init}"
        prior = (loaded.metadata or {}).get("training", {})
    else:
        model, origin, prior = build_model(preset(a.preset)), f"from scratch ({a.preset})", {}
    model.to(dev).train()
    rate = model.config.sample_rate
    seg = int(a.segment * rate)
    spk = dm.load_speaker_folders([Path(x) for x in a.train], rate)
    mixer = GpuMixer(spk, rate, seg, a.speeds, dev)
    print(f"[{a.tag}] train: {len(spk)} speakers, {mixer.flat.numel() / rate / 60:.1f} min incl. speed copies; "
          f"model {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M ({origin}); load {time.time() - t_start:.1f} s",
          flush=True)
    if a.reverb or a.noise or a.eq:
        print(f"[{a.tag}] augment: reverb {a.reverb} (RT60 {a.rt60[0]:g}-{a.rt60[1]:g} s), noise {a.noise} "
              f"(SNR {a.snr[0]:g}-{a.snr[1]:g} dB), eq {a.eq}", flush=True)
    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16)
    # the training forward, compiled on request (same parameters as `model`; validation calls `model` eagerly,
    # so its other batch shapes never trigger a recompile); the first compiled step may still fail
    forward = torch.compile(model) if a.compile else model
    first_compiled = a.compile

    def loss_and_backward(mix: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        with autocast:
            est = forward(mix)
        loss = pit_si_snr_loss(est.float(), src)
        loss.backward()
        return loss

    def step(batch: int, lr: float) -> float:
        nonlocal forward, first_compiled
        mix, src = mixer.batch(batch, gen, a.gain_db, a.partial, polarity=a.polarity, **augment)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        t = time.time()
        try:
            loss = loss_and_backward(mix, src)
        except Exception as e:  # noqa: BLE001 - a compiler failure on the first compiled step: train on, eagerly
            if not first_compiled:
                raise
            print(f"[{a.tag}] torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly", flush=True)
            forward, first_compiled = model, False
            opt.zero_grad(set_to_none=True)
            loss = loss_and_backward(mix, src)
        if first_compiled:
            print(f"[{a.tag}] compiled the training step in {time.time() - t:.0f} s", flush=True)
            first_compiled = False
        zero_grads_if_nonfinite_(params, torch.nn.utils.clip_grad_norm_(params, a.clip_grad))
        opt.step()
        return loss.detach()

    if a.bench:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for b in a.batches:
            model.load_state_dict(state)
            for _ in range(3):
                step(b, 1e-5)
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0, n = time.time(), 10
            for _ in range(n):
                loss = step(b, 1e-5)
            float(loss)
            ms = (time.time() - t0) / n * 1000
            mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0
            print(f"[bench] batch {b}: {ms:.1f} ms/step, {b / ms * 1000:.0f} mixtures/s, {mem:.1f} GiB", flush=True)
        return

    vitems = dm.validation_mixtures(a.valid, rate, a.valid_count, a.segment, model.config.num_spks, a.gain_db)
    vmix = torch.from_numpy(np.stack([m for m, _ in vitems])).to(dev)
    vref = torch.from_numpy(np.stack([s for _, s in vitems])).to(dev)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.csv", "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "seconds", "mixtures", "lr", "train_loss", "valid48_si_snri", "valid_si_snri"])
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

    budget = a.minutes * 60
    best, best_state, steps, seen, losses = -math.inf, None, 0, 0, []
    bad, peak_lr = 0, a.lr
    t0 = last_valid = time.time()
    hardware = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"

    def save(name: str, score: dict) -> None:
        meta = {"training": {
            "recipe": "recipes/gpu_default_8k.py " + " ".join(sys.argv[1:]),
            "hardware": hardware, "origin": origin, "prior": prior,
            "steps": steps, "mixtures": seen, "train_seconds": round(time.time() - t0, 1),
            "batch": a.batch, "peak_lr": peak_lr, "segment_seconds": a.segment,
            "augment": {"speeds": a.speeds, "gain_db": a.gain_db, "partial": a.partial, "polarity": a.polarity,
                        "reverb": a.reverb, "rt60": a.rt60, "noise": a.noise, "snr_db": a.snr, "eq": a.eq},
            "train": [Path(x).name for x in a.train], "valid": [Path(x).name for x in a.valid],
            **score}}
        save_native(model, out / name, meta)

    def run_validation() -> dict:
        v = si_snri_per_mixture(model, vmix, vref, batch_size=64)[1].numpy()  # SI-SNRi, fp32
        score = {"valid48_si_snri": round(float(v[:48].mean()), 3), "valid_si_snri": round(float(v.mean()), 3),
                 "valid_count": len(v)}
        tl = float(np.mean(losses)) if losses else float("nan")
        writer.writerow([steps, round(time.time() - t0, 1), seen, f"{lr:.3g}", round(tl, 3),
                         score["valid48_si_snri"], score["valid_si_snri"]])
        log.flush()
        print(f"[{a.tag}] step {steps} {time.time() - t0:.0f}s mixtures {seen} lr {lr:.2e} train {tl:.2f} "
              f"valid48 {score['valid48_si_snri']:.2f} valid{len(v)} {score['valid_si_snri']:.2f} dB", flush=True)
        losses.clear()
        return score

    lr = 0.0
    score = run_validation()
    best, best_state = score["valid_si_snri"], {k: v.detach().clone() for k, v in model.state_dict().items()}
    while not stop["now"]:
        frac = min(1.0, (time.time() - t0) / budget)
        if frac >= 1.0:
            break
        lr = peak_lr * min(1.0, (steps + 1) / a.warmup) * (
            a.final_lr + (1 - a.final_lr) * 0.5 * (1 + math.cos(math.pi * frac)))
        loss = step(a.batch, lr)
        steps += 1
        seen += a.batch
        if steps % 20 == 0:
            lv = float(loss)
            if math.isfinite(lv):
                losses.append(lv)
                bad = 0
            else:
                bad += 1
                if bad >= 3:  # diverged: back to the best weights, half the learning rate
                    model.load_state_dict(best_state)
                    opt = torch.optim.Adam(params, lr=lr)
                    peak_lr, bad = peak_lr / 2, 0
                    print(f"[{a.tag}] non-finite loss: restored best, peak lr now {peak_lr:.2e}", flush=True)
        if time.time() - last_valid >= a.valid_every:
            last_valid = time.time()
            score = run_validation()
            if score["valid_si_snri"] > best:
                best, best_state = score["valid_si_snri"], {k: v.detach().clone() for k, v in model.state_dict().items()}
                save("best.safetensors", score)
    score = run_validation()
    save("final.safetensors", score)
    if score["valid_si_snri"] > best:
        save("best.safetensors", score)
        best = score["valid_si_snri"]
    print(f"[{a.tag}] done: {steps} steps, {seen} mixtures in {time.time() - t0:.0f} s; best valid {best:.2f} dB",
          flush=True)


if __name__ == "__main__":
    main()
