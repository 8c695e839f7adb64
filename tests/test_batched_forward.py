"""Several chunks per forward pass (Separator(batch_size > 1), the CUDA default) give the output of one chunk
per pass: each chunk's estimates go back to that chunk, whatever the batch size and however the stream is cut.
Runs on the CPU."""
from __future__ import annotations

import numpy as np
import pytest
from oracles import oracle_model, si_snrs, talkers

from mossep.separator import Separator


@pytest.fixture(scope="module")
def mixture() -> np.ndarray:
    """Two talkers that the oracle separates; 7 chunks of 1 s, hop 0.75 s, the last one irregular."""
    rng = np.random.default_rng(7)
    x = talkers(8000, seconds=5.04).sum(0)
    return (x + 0.003 * rng.standard_normal(len(x))).astype(np.float32)


@pytest.mark.parametrize("batch_size", [3, 4])  # 7 chunks: batches of 3, 3, 1 and of 4, 3
@pytest.mark.parametrize("settings", [dict(passes=1, wiener=False), dict(passes=2, wiener=True)],
                         ids=["plain", "two-passes-wiener"])
@pytest.mark.parametrize("which", ["tiny", "oracle"])
def test_batch_size_does_not_change_the_output(tiny_model_path, mixture, batch_size, settings, which):
    # the tiny model with mossep.solo off: where solo finds one voice (the random network separates nothing) the
    # output is the mixture itself, whichever chunk the estimates went to (the oracle keeps the default)
    kw = dict(device="cpu", chunk_seconds=1.0, overlap_seconds=0.25, solo=False if which == "tiny" else None,
              **settings)
    model = tiny_model_path if which == "tiny" else oracle_model()
    one = Separator(model, batch_size=1, **kw)
    many = Separator(model, batch_size=batch_size, **kw)
    assert many.batch_size == batch_size
    want = one.separate(mixture, 8000)
    np.testing.assert_allclose(many.separate(mixture, 8000), want, atol=1e-5)
    # streamed in uneven blocks (chunks become ready a few at a time) and at another input rate
    blocks = np.array_split(mixture, 13)
    got = np.concatenate(list(many.separate_stream(blocks, len(mixture))), axis=1)
    np.testing.assert_allclose(got, np.concatenate(list(one.separate_stream([mixture])), axis=1), atol=1e-5)
    if which == "oracle":  # and it is the right answer
        assert min(si_snrs(want, talkers(8000, seconds=5.04))) > 15.0


def test_batched_chunks_go_back_to_their_own_chunk(tiny_model_path, mixture, monkeypatch):
    """An oracle 'model' that answers each chunk with its own position: every output sample must come from
    the chunk(s) covering it, for any batch size."""
    outs = {}
    for bs in (1, 4):
        sep = Separator(tiny_model_path, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25, batch_size=bs,
                        remove_hum=False)
        sizes = []

        def forward(audios, sizes=sizes):
            sizes.append(len(audios))
            # speaker 1 = the chunk itself, speaker 2 = a quiet copy: the level fit keeps them apart
            return np.stack([np.stack([a, 0.01 * a[::-1]]) for a in audios]).astype(np.float64)

        monkeypatch.setattr(sep, "_forward", forward)
        outs[bs] = sep.separate(mixture, 8000)
        assert max(sizes) == bs and sum(sizes) == 7
    np.testing.assert_allclose(outs[4], outs[1], atol=1e-6)
    # and speaker 1 is the mixture itself (less each chunk's mean), as the oracle said
    assert np.corrcoef(outs[1][0], mixture)[0, 1] > 0.999
