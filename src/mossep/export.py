"""ONNX export of a separation network (`mossep export MODEL out.onnx`) and running one with onnxruntime.

The exported graph is the network alone, mixture [B, T] float32 -> sources [B, C, T], with the batch size and
the length both dynamic: one file runs any length the model accepts (at least `kernel_size` samples). What
surrounds the network in mossep (chunking, stitching, level, passes, post-filter) stays in Python.

Two things differ from the eager model, both computing the same function:
- the FLASH layers' local attention pads the last group to a whole one and attends all groups in one batched
  matmul (mossep.models.attention.joint_attention_padded), so no Python branch depends on the length;
- GroupNorm and InstanceNorm take their mean and variance in float64 (ExactNorm): onnxruntime's float32
  reductions lose about 1e-3 of the output RMS on a 4 s input (a GroupNorm over all channels and frames sums
  half a million values); the normalisation itself stays float32.
Every export is checked before it is kept: onnxruntime must reproduce the PyTorch output within
VERIFY_TOLERANCE (max |difference| / RMS) at two lengths, or nothing is written.

Needs the optional extra: pip install 'mossep[onnx]' (onnx, onnxscript for torch's exporter, onnxruntime).
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoints import LoadedModel, load_checkpoint
from .errors import MossepError, reason
from .fsutil import atomic_path, check_new_file

INPUT, OUTPUT = "mix", "sources"
VERIFY_TOLERANCE = 1e-4  # max |onnxruntime - torch| / rms(torch), as the conformance criterion
METADATA_KEY = "mossep"  # metadata_props entry: JSON with arch, sample_rate, num_spks, min_samples, source
INSTALL = "pip install 'mossep[onnx]'"


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MossepError(f"ONNX support needs {', '.join(missing)}: {INSTALL}")


class ExactNorm(nn.Module):
    """GroupNorm / affine InstanceNorm2d with float64 statistics (two passes), same parameters and output.
    [B, C, ...] -> [B, C, ...]."""

    def __init__(self, norm: nn.GroupNorm | nn.InstanceNorm2d):
        super().__init__()
        self.groups = norm.num_groups if isinstance(norm, nn.GroupNorm) else norm.num_features
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias  # the same Parameters (shared, not copied)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.reshape(x.shape[0], self.groups, -1)
        g64 = g.double()
        mean = g64.mean(-1, keepdim=True)
        d = g64 - mean
        inv = torch.rsqrt((d * d).mean(-1, keepdim=True) + self.eps)
        y = ((g - mean.float()) * inv.float()).reshape(x.shape)
        if self.weight is None:
            return y
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return y * self.weight.view(shape) + self.bias.view(shape)


def exportable(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval, frozen) with every GroupNorm and affine InstanceNorm2d replaced by ExactNorm."""
    model = copy.deepcopy(model).eval().requires_grad_(False)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm) or (isinstance(child, nn.InstanceNorm2d) and child.affine
                                                   and not child.track_running_stats):
                setattr(parent, name, ExactNorm(child))
    return model


def _example(cfg, length: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, length)).astype(np.float32) * 0.1)


def verify_lengths(cfg) -> tuple[int, int]:
    """Two lengths the check runs at: about 1 s and about 0.55 s, neither a whole number of frames or groups."""
    sr = int(cfg.sample_rate)
    return sr + 5, sr // 2 + sr // 20 + 3


def onnx_difference(session, model: nn.Module, x: np.ndarray) -> float:
    """max |onnxruntime - torch| / rms(torch) on mixture x [B, T]."""
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).double().numpy()
    got = session.run([OUTPUT], {INPUT: x})[0]
    if got.shape != ref.shape:
        return float("inf")
    return float(np.abs(got - ref).max() / max(np.sqrt(np.mean(ref**2)), 1e-30))


def _metadata(loaded: LoadedModel) -> dict:
    cfg = loaded.config
    from . import __version__

    return {"arch": cfg.arch, "sample_rate": int(cfg.sample_rate), "num_spks": int(cfg.num_spks),
            "min_samples": int(cfg.min_samples), "source_format": loaded.metadata.get("source_format", loaded.source),
            "source_path": loaded.path.name, "exported_by": f"mossep {__version__}",
            "input": f"{INPUT} [batch, samples] float32 at sample_rate",
            "output": f"{OUTPUT} [batch, num_spks, samples] float32"}


def _to_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.onnx.export (the torch.export-based exporter) with dynamic batch and length, weights inside."""
    dynamic = {INPUT: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}}
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=dynamic, input_names=[INPUT],
                                        output_names=[OUTPUT], external_data=False, optimize=False, verbose=False)
        program.save(str(path), external_data=False)
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


def export_onnx(model: str | Path | LoadedModel | None, out: str | Path, overwrite: bool = False,
                model_rate: int | None = None) -> dict:
    """Export `model` (a path, a name as for --model, a LoadedModel, or None for the bundled one) to the ONNX
    file `out`, written atomically and only after onnxruntime reproduced the PyTorch output at two lengths.
    Returns a summary: path, arch, sample_rate, num_spks, max_rel_error (of the check), opset."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise MossepError(f"{out}: output must be an .onnx file")
    check_new_file(out, overwrite)
    _require("onnx", "onnxscript", "onnxruntime")
    import onnx

    loaded = model if isinstance(model, LoadedModel) else load_checkpoint(model, sample_rate=model_rate)
    cfg = loaded.config
    net = exportable(loaded.model.cpu())
    meta = _metadata(loaded)
    with atomic_path(out) as tmp:
        try:
            _to_onnx(net, _example(cfg, verify_lengths(cfg)[0] + 128), tmp)
        except Exception as e:  # the exporter's failures are long multi-line reports
            raise MossepError(f"{loaded.path}: ONNX export failed: {reason(e)}") from None
        proto = onnx.load(str(tmp))
        for item in (*proto.graph.node, *proto.graph.value_info):  # the exporter's source traces: 40 % of the file
            del item.metadata_props[:]
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
        onnx.save(proto, str(tmp))
        session = open_session(tmp, threads=None)
        errors = [onnx_difference(session, loaded.model, _example(cfg, n, batch=1, seed=i + 1).numpy())
                  for i, n in enumerate(verify_lengths(cfg))]
        if not max(errors) <= VERIFY_TOLERANCE:
            raise MossepError(f"{out}: onnxruntime differs from PyTorch by {max(errors):.3g} of the output RMS "
                              f"(more than {VERIFY_TOLERANCE:g}); nothing written")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"path": out, **meta, "max_rel_error": max(errors), "opset": opset,
            "parameters": sum(p.numel() for p in loaded.model.parameters())}


def open_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU InferenceSession for `path` (threads: intra-op threads; None = onnxruntime's choice)."""
    _require("onnxruntime")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise MossepError(f"{path}: onnxruntime cannot load it: {reason(e)}") from None


def read_metadata(session) -> dict:
    """The mossep metadata stored in an exported file ({} when it has none)."""
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def model_key(loaded: LoadedModel) -> str:
    """A hash of what an export depends on: the config, every weight, and the mossep/torch/exporter versions."""
    import hashlib

    from . import __version__

    h = hashlib.sha256(json.dumps([loaded.config.to_dict(), __version__, torch.__version__]).encode())
    for name, t in sorted(loaded.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def cached_export(loaded: LoadedModel, note=None) -> Path:
    """The exported file of `loaded` under the cache folder (onnx/KEY.onnx), exported (and checked) on first use."""
    from .fsutil import cache_dir

    path = cache_dir() / "onnx" / f"{model_key(loaded)}.onnx"
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MossepError(f"{path.parent}: cannot create the ONNX cache folder ({reason(e)})") from None
        if note is not None:
            note(f"exporting the model to ONNX once, into {path}")
        export_onnx(loaded, path, overwrite=True)
    return path


class OnnxNetwork:
    """The network of `loaded` run by onnxruntime, called like the torch module: mixture [B, T] -> [B, C, T]
    (CPU, float32). The export comes from cached_export."""

    def __init__(self, loaded: LoadedModel, threads: int | None = None, note=None):
        self.config = loaded.config
        self.session = open_session(cached_export(loaded, note), threads=threads)

    def __call__(self, mix: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(mix.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])
