"""Attention backends and the non-cyclic 3D window mask (CPU)."""
import itertools

import pytest
import torch

from streamdit.network import attention as attn
from streamdit.network.attention import WindowMask, attention, available_backends, resolve_backend


def qkv(grid, heads=2, head_dim=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = grid[0] * grid[1] * grid[2]
    return [torch.randn(batch, length, heads, head_dim, generator=g) for _ in range(3)]


def token(grid, f, h, w):
    return (f * grid[1] + h) * grid[2] + w


def test_dense_matches_definition():
    """Two tokens attend iff (pos + shift) // window agrees on every axis (no wrap-around)."""
    grid, window, shift = (3, 5, 4), (2, 3, 2), (1, 1, 1)
    dense = WindowMask(grid, window, shift).dense()
    cells = list(itertools.product(*(range(n) for n in grid)))
    expected = torch.tensor([[all((a + s) // w == (b + s) // w for a, b, s, w in zip(p, q, shift, window))
                              for q in cells] for p in cells])
    assert torch.equal(dense, expected)


def test_shifted_windows_by_hand():
    # F = H = W = 4, window 2, shift 1: along each axis the groups are {0}, {1, 2}, {3}.
    grid = (4, 4, 4)
    dense = WindowMask(grid, (2, 2, 2), (1, 1, 1)).dense()
    plain = WindowMask(grid, (2, 2, 2)).dense()

    def sees(mask, a, b):
        return bool(mask[token(grid, *a), token(grid, *b)])

    assert sees(dense, (0, 0, 0), (0, 0, 0))
    assert sees(dense, (1, 1, 1), (2, 2, 2))
    assert sees(dense, (1, 2, 1), (2, 1, 2))
    assert sees(dense, (3, 3, 3), (3, 3, 3))
    assert not sees(dense, (0, 1, 1), (1, 1, 1))  # same window when unshifted ...
    assert sees(plain, (0, 1, 1), (1, 1, 1))
    assert not sees(dense, (2, 2, 2), (3, 2, 2))
    assert not sees(dense, (1, 0, 0), (1, 3, 3))  # spatial wrap-around
    # A cyclic roll by one frame would put frames 3 and 0 in one window: newest noise seeing oldest.
    assert not sees(dense, (3, 1, 1), (0, 1, 1))
    assert not sees(dense, (0, 0, 0), (3, 0, 0))
    assert not sees(plain, (1, 0, 0), (2, 0, 0))
    assert torch.equal(dense, dense.T)
    # Windows are the products of the per-axis groups: corner 1 token, centre 8 tokens.
    assert dense[token(grid, 0, 0, 0)].sum() == 1 and dense[token(grid, 1, 1, 1)].sum() == 8


def test_window_normalisation():
    mask = WindowMask((4, 4, 4), (8, 2, 2), (3, 1, 5))
    assert mask.window == (4, 2, 2) and mask.shift == (0, 1, 1)
    assert WindowMask((2, 3, 4), (9, 9, 9), (1, 1, 1)).is_full
    assert WindowMask((2, 3, 4), (2, 3, 4), (1, 1, 2)) == WindowMask((2, 3, 4), (5, 5, 5))
    assert WindowMask.for_layer((4, 8, 8), (2, 4, 4), 1).shift == (1, 2, 2)
    assert WindowMask.for_layer((4, 8, 8), (2, 4, 4), 2).shift == (0, 0, 0)


@pytest.mark.parametrize("shift", [(0, 0, 0), (1, 2, 2)])
def test_flex_matches_sdpa(shift):
    grid = (4, 6, 8)
    mask = WindowMask(grid, (2, 4, 4), shift)
    q, k, v = qkv(grid)
    ref = attention(q, k, v, mask, backend="sdpa")
    out = attention(q, k, v, mask, backend="flex")
    assert out.shape == q.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    full = attention(q, k, v, None, backend="flex")
    torch.testing.assert_close(full, attention(q, k, v, backend="sdpa"), atol=1e-5, rtol=1e-5)


def test_window_equals_explicit_per_window_attention():
    """Windowed attention = full attention run separately inside every window."""
    grid = (4, 4, 4)
    mask = WindowMask(grid, (2, 2, 2), (1, 1, 1))
    q, k, v = qkv(grid, batch=1)
    out = attention(q, k, v, mask, backend="sdpa")
    ids = mask.window_ids(torch.arange(mask.seq_len))
    for wid in ids.unique():
        sel = ids == wid
        ref = attention(q[:, sel], k[:, sel], v[:, sel], backend="sdpa")
        torch.testing.assert_close(out[:, sel], ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_covering_window_is_full_attention(backend):
    grid = (3, 4, 5)
    q, k, v = qkv(grid)
    full = attention(q, k, v, backend="sdpa")
    for window, shift in [((3, 4, 5), (1, 2, 2)), ((8, 8, 8), (0, 0, 0)), ((16, 16, 16), (8, 8, 8))]:
        mask = WindowMask(grid, window, shift)
        assert mask.dense().all()
        torch.testing.assert_close(attention(q, k, v, mask, backend=backend), full, atol=1e-6, rtol=1e-6)


def test_sdpa_windowed_has_gradients():
    grid = (2, 4, 4)
    q, k, v = (t.requires_grad_() for t in qkv(grid))
    attention(q, k, v, WindowMask(grid, (1, 2, 2), (0, 1, 1))).square().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_mask_length_mismatch_raises():
    q, k, v = qkv((2, 2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        attention(q, k, v, WindowMask((2, 2, 4), (1, 1, 1)))


def test_backend_selection_cpu():
    assert resolve_backend("auto", "cpu") == "sdpa"
    assert resolve_backend("auto", "cpu", windowed=True) == "sdpa"
    assert available_backends("cpu")[0] == "auto" and "sdpa" in available_backends("cpu")
    q, k, v = qkv((1, 2, 2))
    with pytest.raises(ValueError, match="choose one of auto, sdpa, flex"):
        attention(q, k, v, backend="no-such-kernel")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sdpa"):
            attention(q, k, v, backend="xformers")
        with pytest.raises(ValueError):
            resolve_backend("sdpa-cudnn", "cpu")
    with pytest.raises(ValueError, match="unknown attention backend"):
        attn.set_default_backend("nope")


def test_set_default_backend():
    try:
        attn.set_default_backend("flex")
        assert resolve_backend("auto", "cpu") == "flex"
        assert resolve_backend("sdpa", "cpu") == "sdpa"  # an explicit choice wins
    finally:
        attn.set_default_backend("auto")
    assert resolve_backend("auto", "cpu") == "sdpa"
