"""Fast mode (mossep.fast) and the exact-mode speed rewrites of the MossFormer block.

The exact-mode rewrites (channels-last depthwise conv with the identity folded in, stacked [v | u]
attention accumulated in place, unpadded last group) are checked against straightforward reference
computations written out here, forward and backward.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mossep import fast as fast_mod
from mossep.fast import make_fast
from mossep.metrics import si_snr
from mossep.models import build_model, preset
from mossep.models.attention import joint_attention, joint_attention_stacked
from mossep.models.blocks import ConvModule, ScaleNorm, token_shift


# ---- straightforward references -------------------------------------------------------------------

def ref_joint_attention(qq, lq, qk, lk, v, u, g):
    """Zero-pad to whole groups, loop over groups: relu(q k^T / g)^2 v + lq (lk^T v / L)."""
    B, L, _ = v.shape
    pad = (-L) % g
    qq, lq, qk, lk, v, u = (F.pad(t, (0, 0, 0, pad)) for t in (qq, lq, qk, lk, v, u))
    outs = []
    for val in (v, u):
        glob = lq @ (lk.transpose(1, 2) @ val / L)
        local = torch.cat([F.relu(qq[:, s:s + g] @ qk[:, s:s + g].transpose(1, 2) / g) ** 2 @ val[:, s:s + g]
                           for s in range(0, L + pad, g)], dim=1)
        outs.append((local + glob)[:, :L])
    return outs


def ref_scalenorm(m: ScaleNorm, x):
    return x / (x.norm(dim=-1, keepdim=True) * m.scale).clamp(min=m.eps) * m.g


def ref_ffconvm(m, x):
    norm, linear, _, conv_module, _ = m.mdl
    h = F.silu(linear(ref_scalenorm(norm, x) if isinstance(norm, ScaleNorm) else norm(x)))
    conv = conv_module.sequential[1].conv
    return h + conv(h.transpose(1, 2).contiguous()).transpose(1, 2)


def ref_block(blk, x):
    shifted = token_shift(x)
    v, u = ref_ffconvm(blk.to_hidden, shifted).chunk(2, dim=-1)
    z = ref_ffconvm(blk.to_qk, shifted)
    cos, sin = blk.rotary_pos_emb.angles(x.shape[1], x.device)
    os_ = blk.qk_offset_scale
    qs = [blk.rotary_pos_emb.rotate(z * os_.gamma[h] + os_.beta[h], cos, sin) for h in range(4)]
    att_v, att_u = ref_joint_attention(*qs, v, u, blk.group_size)
    return x + ref_ffconvm(blk.to_out, (att_u * v) * torch.sigmoid(att_v * u))


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ---- exact mode -----------------------------------------------------------------------------------

@pytest.mark.parametrize("L", [1, 20, 64, 150, 192])
def test_joint_attention_matches_padded_reference(L):
    torch.manual_seed(L)
    B, d, e, g = 2, 16, 24, 64
    qq, lq, qk, lk = (torch.randn(B, L, d, requires_grad=True) for _ in range(4))
    v, u = (torch.randn(B, L, e, requires_grad=True) for _ in range(2))
    ref = ref_joint_attention(qq, lq, qk, lk, v, u, g)
    ours = joint_attention(qq, lq, qk, lk, v, u, g)
    for a, b in zip(ours, ref):
        assert a.shape == (B, L, e)
        assert rel_err(a, b) < 1e-5
    # gradients of a scalar of both outputs agree too (the in-place accumulation is autograd-safe)
    grads_ref = torch.autograd.grad(sum((r * r).sum() for r in ref), (qq, lk, v, u))
    grads_ours = torch.autograd.grad(sum((o * o).sum() for o in ours), (qq, lk, v, u))
    for a, b in zip(grads_ours, grads_ref):
        assert rel_err(a, b) < 1e-4


def test_stacked_attention_is_concatenation_of_separate_ones():
    torch.manual_seed(0)
    q = [torch.randn(1, 100, 8) for _ in range(4)]
    v, u = torch.randn(1, 100, 12), torch.randn(1, 100, 12)
    stacked = joint_attention_stacked(*q, torch.cat((v, u), -1), 32)
    assert torch.allclose(stacked[..., :12], joint_attention_stacked(*q, v, 32), atol=1e-5)
    assert torch.allclose(stacked[..., 12:], joint_attention_stacked(*q, u, 32), atol=1e-5)


def test_conv_module_is_identity_plus_depthwise_conv():
    torch.manual_seed(0)
    m = ConvModule(32, 17)
    x = torch.randn(2, 50, 32, requires_grad=True)
    conv = m.sequential[1].conv
    ref = x + conv(x.transpose(1, 2).contiguous()).transpose(1, 2)
    out = m(x)
    assert out.shape == x.shape and rel_err(out, ref) < 1e-5
    g_ref, = torch.autograd.grad(ref.square().sum(), conv.weight)
    g_out, = torch.autograd.grad(out.square().sum(), conv.weight)
    assert rel_err(g_out, g_ref) < 1e-4
    assert torch.count_nonzero(conv.weight.detach()[:, 0, 8] == 1.0) < 32  # the stored kernel is not changed


@pytest.mark.parametrize("frames", [100, 128, 300])
def test_block_matches_reference(frames):
    torch.manual_seed(frames)
    model = build_model(preset("tiny", dropout=0.0)).eval()
    blk = model.mask_net.mdl.att_mdl.mossformerM.layers[0]
    x = torch.randn(2, frames, 64)
    with torch.no_grad():
        assert rel_err(blk(x), ref_block(blk, x)) < 1e-5


# ---- fast mode ------------------------------------------------------------------------------------

def _mix(seconds=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(8000 * seconds)) / 8000
    return (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.1 * torch.randn(t.shape, generator=g))[None]


@pytest.mark.parametrize("arch", ["mossformer", "mossformer2"])
@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_make_fast_close_to_exact_and_leaves_model_alone(arch, mode, monkeypatch):
    if mode == "bf16" and not fast_mod.bf16_is_native("cpu"):
        pytest.skip("this CPU has no native bfloat16")
    monkeypatch.setattr(fast_mod, "bf16_is_native", lambda device="cpu": mode == "bf16")
    torch.manual_seed(0)
    model = build_model(preset("tiny", arch=arch)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _mix()
    with torch.inference_mode():
        exact = model(x)
        fast = make_fast(model)
        approx = fast(x)
        again = model(x)
    assert fast_mod.fast_mode_name(model) == mode
    assert approx.shape == exact.shape and approx.dtype == torch.float32
    assert si_snr(approx[0], exact[0]).min().item() > 20.0  # measured: ~40 dB bf16, ~30 dB int8
    # the model passed in is unchanged (same weights, same output, same module types)
    assert torch.equal(again, exact)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fast is not model and fast.config == model.config


def test_make_fast_in_place():
    torch.manual_seed(0)
    model = build_model(preset("tiny"))
    assert make_fast(model, copy=False) is model or fast_mod.fast_mode_name(model) == "int8"


@pytest.mark.parametrize("arch", ["mossformer", "mossformer2"])
def test_bf16_mode_stores_the_mask_net_in_bf16_but_positions_and_filterbanks_in_fp32(arch, monkeypatch):
    monkeypatch.setattr(fast_mod, "bf16_is_native", lambda device="cpu": True)
    torch.manual_seed(0)
    fast = make_fast(build_model(preset("tiny", arch=arch)).eval())
    def kept(key):  # the rotary and sinusoidal position tables (and the latter's scale)
        return key.endswith("rotary_pos_emb.freqs") or ".pos_enc." in key

    floats = {k: v.dtype for k, v in fast.state_dict().items() if v.is_floating_point()}
    mask_net = {k: d for k, d in floats.items() if k.startswith("mask_net.")}
    assert mask_net and all(d == torch.bfloat16 for k, d in mask_net.items() if not kept(k))
    assert {d for k, d in mask_net.items() if kept(k)} == {torch.float32}
    assert any(k.endswith("freqs") for k in mask_net) and any(k.endswith("inv_freq") for k in mask_net)
    assert all(d == torch.float32 for k, d in floats.items() if k.startswith(("encoder.", "decoder.")))
    assert not any(p.requires_grad for p in fast.mask_net.parameters())


def test_bf16_mode_stays_close_on_a_long_input(monkeypatch):
    """Thousands of frames in: the rotary angles stay exact (float32 freqs), so the output does not drift."""
    if not fast_mod.bf16_is_native("cpu"):
        pytest.skip("this CPU has no native bfloat16")
    torch.manual_seed(0)
    model = build_model(preset("tiny")).eval()
    x = _mix(seconds=8.0, seed=3)  # 7999 frames
    with torch.inference_mode():
        exact, approx = model(x), make_fast(model)(x)
    assert si_snr(approx[0], exact[0]).min().item() > 20.0


def test_separator_fast_mode_chunks_like_exact_mode_and_differs_only_slightly(tiny_model_path):
    """Same chunk plan in both modes (the chunk defaults are chosen for quality, see chunking.py), so fast mode
    changes only the arithmetic; separating a 20 s mixture gives nearly the exact output."""
    from mossep.separator import Separator

    fast = Separator(tiny_model_path, device="cpu", fast=True)
    exact = Separator(tiny_model_path, device="cpu")
    assert (fast.chunk, fast.overlap) == (exact.chunk, exact.overlap)
    assert fast.model is not exact.model
    mix = _mix(20.0, seed=5)[0].numpy()
    a, b = exact.separate(mix, 8000), fast.separate(mix, 8000)
    assert a.shape == b.shape == (2, 160000)
    assert si_snr(torch.from_numpy(b), torch.from_numpy(a)).min().item() > 20.0


def test_onednn_linear_matches_linear_and_silu_and_replaces_every_linear(monkeypatch):
    """bf16 mode on a CPU: each linear layer of the mask net is one oneDNN call with its bias (and FFConvM's SiLU)
    fused; the result is F.linear (+ SiLU) in float32, rounded once to bf16."""
    if not (fast_mod.bf16_is_native("cpu") and fast_mod.onednn_linear_available()):
        pytest.skip("this CPU has no native bfloat16 or no oneDNN linear")
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 96)
    x = torch.randn(2, 50, 64)
    with torch.inference_mode():
        bf = lin.bfloat16()
        xb = x.bfloat16()
        ref = F.linear(xb.float(), bf.weight.float(), bf.bias.float())
        for act, want in (("none", ref), ("swish", F.silu(ref))):
            out = fast_mod.OneDNNLinear(bf.weight, bf.bias, act)(xb)
            assert out.dtype == torch.bfloat16 and out.shape == (2, 50, 96)
            assert rel_err(out.float(), want) < 1e-2  # one bf16 rounding (2^-9 relative)
    for arch in ("mossformer", "mossformer2"):
        fast = make_fast(build_model(preset("tiny", arch=arch)).eval())
        mods = list(fast.mask_net.modules())
        assert not any(type(m) is torch.nn.Linear or isinstance(m, torch.nn.SiLU) for m in mods)
        fsmn_blocks = [m for m in mods if type(m).__name__ == "GatedFSMNBlock"]  # their 1x1 convs too
        assert len(fsmn_blocks) == (2 if arch == "mossformer2" else 0)
        assert all(isinstance(b.conv1[0], fast_mod.OneDNNLinear) and isinstance(b.conv2, fast_mod.OneDNNLinear)
                   for b in fsmn_blocks)
        assert sum(isinstance(m, fast_mod.OneDNNLinear) and m.activation == "swish" for m in mods) > 0
        with torch.inference_mode():  # a copy packs its weights again and computes the same
            assert torch.equal(copy.deepcopy(fast)(_mix()), fast(_mix()))


@pytest.mark.parametrize("c", [8, 32])  # 8: oneDNN's bf16 kernel would hang at 9 * 2 - 1 taps (float32 instead)
@pytest.mark.parametrize("n_in, dilation", [(1, 1), (2, 2), (3, 4)])
def test_grouped_time_conv_on_a_channels_last_view_equals_the_stored_conv2d(n_in, dilation, c):
    """The FSMN's dense layers hand grouped_time_conv transposed [B, L, C] tensors (channels-last); the result is
    the stored Conv2d's, in both precisions, and comes back channels-last (no copies between the layers)."""
    from mossep.models.fsmn import grouped_time_conv

    torch.manual_seed(n_in)
    K, L = 9, 37
    conv = torch.nn.Conv2d(c * n_in, c, (K, 1), dilation=(dilation, 1), padding=(dilation * (K - 1) // 2, 0),
                           groups=c, bias=False)
    x = torch.randn(2, L, c * n_in).transpose(1, 2)  # [B, C, L], channels-last in memory
    with torch.no_grad():
        ref = conv(x.contiguous().unsqueeze(-1)).squeeze(-1)
        out = grouped_time_conv(x, conv)
        assert out.shape == ref.shape and out.transpose(1, 2).is_contiguous()
        assert rel_err(out, ref) < 1e-5
        out16 = grouped_time_conv(x.bfloat16(), conv.bfloat16())
        assert rel_err(out16.float(), ref) < 2e-2


def test_narrow_depthwise_conv_returns_under_bf16_autocast():
    """oneDNN's bf16 depthwise kernel never returns for 2-16 channels and 15+ taps (torch 2.13); bf16 autocast
    (which `mossep train` uses on CPUs with native bf16) reaches that kernel from float32 inputs, so
    depthwise_conv must run such a convolution in float32 there too. In a subprocess: a hang is a timeout."""
    import subprocess
    import sys
    code = (
        "import torch\n"
        "from mossep.models.blocks import depthwise_conv\n"
        "x = torch.randn(1, 400, 8).transpose(1, 2); w = torch.randn(8, 1, 17)\n"
        "ref = depthwise_conv(x, w, 8)\n"
        "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "    y = depthwise_conv(x, w, 8)\n"
        "assert y.dtype == torch.float32 and torch.equal(y, ref), (y.dtype, (y - ref).abs().max())\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
