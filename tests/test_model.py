"""WanDiT: Wan 2.1 names and shapes, per-frame time, windows, RoPE, dtypes, diffusers equivalence (CPU)."""
import dataclasses
import re

import pytest
import torch

from streamdit.network.config import PRESETS, ModelConfig
from streamdit.network.model import WanDiT, apply_rope, count_parameters, rope_table

TINY = ModelConfig(dim=96, ffn_dim=128, num_heads=2, num_layers=2, in_dim=4, out_dim=4,
                   text_dim=32, text_len=16, freq_dim=32)


def tiny(**changes) -> ModelConfig:
    return dataclasses.replace(TINY, **changes)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (the head included), norm weights around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if re.search(r"norm\w*\.weight", name) else 0.2 * noise)
    return model.eval()


def inputs(batch=2, frames=3, size=8, cfg=TINY, text=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_dim, frames, size, size, generator=g)
    t = torch.rand(batch, generator=g) * 1000
    context = torch.randn(batch, text or cfg.text_len, cfg.text_dim, generator=g)
    return x, t, context


def wan_keys(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Wan 2.1's original state-dict names and shapes (reference-wan.md 1.2)."""
    d, patch = cfg.dim, cfg.patch_size
    keys = {"patch_embedding.weight": (d, cfg.in_dim, *patch), "patch_embedding.bias": (d,),
            "text_embedding.0.weight": (d, cfg.text_dim), "text_embedding.0.bias": (d,),
            "text_embedding.2.weight": (d, d), "text_embedding.2.bias": (d,),
            "time_embedding.0.weight": (d, cfg.freq_dim), "time_embedding.0.bias": (d,),
            "time_embedding.2.weight": (d, d), "time_embedding.2.bias": (d,),
            "time_projection.1.weight": (6 * d, d), "time_projection.1.bias": (6 * d,),
            "head.modulation": (1, 2, d), "head.head.weight": (patch[0] * patch[1] * patch[2] * cfg.out_dim, d),
            "head.head.bias": (patch[0] * patch[1] * patch[2] * cfg.out_dim,)}
    for i in range(cfg.num_layers):
        b = f"blocks.{i}."
        keys[b + "modulation"] = (1, 6, d)
        for attn in ("self_attn", "cross_attn"):
            for lin in "qkvo":
                keys[f"{b}{attn}.{lin}.weight"], keys[f"{b}{attn}.{lin}.bias"] = (d, d), (d,)
            keys[f"{b}{attn}.norm_q.weight"] = keys[f"{b}{attn}.norm_k.weight"] = (d,)
        keys[b + "norm3.weight"] = keys[b + "norm3.bias"] = (d,)
        keys[b + "ffn.0.weight"], keys[b + "ffn.0.bias"] = (cfg.ffn_dim, d), (cfg.ffn_dim,)
        keys[b + "ffn.2.weight"], keys[b + "ffn.2.bias"] = (d, cfg.ffn_dim), (d,)
    return keys


def test_state_dict_is_wan():
    model = WanDiT(TINY)
    sd = model.state_dict()
    expected = wan_keys(TINY)
    assert set(sd) == set(expected)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert sd["head.head.weight"].shape == (16, 96) and sd["blocks.1.ffn.0.weight"].shape == (128, 96)
    assert list(model.buffers()) == []
    WanDiT(TINY).load_state_dict(sd, strict=True)


def test_parameter_counts():
    assert count_parameters(PRESETS["wan2.1-t2v-1.3b"].model) == 1_418_996_800
    assert count_parameters(PRESETS["wan2.1-t2v-14b"].model) == 14_288_491_584
    assert 3.5e9 <= count_parameters(PRESETS["streamdit-4b"].model) <= 4.5e9
    assert count_parameters(TINY) == sum(v.numel() for v in WanDiT(TINY).state_dict().values())


def to_diffusers(sd: dict) -> dict:
    """Original Wan 2.1 names -> diffusers WanTransformer3DModel names (reference-wan.md 1.6)."""
    rules = [(r"^text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
             (r"^text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
             (r"^time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
             (r"^time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
             (r"^time_projection\.1\.", "condition_embedder.time_proj."),
             (r"^head\.head\.", "proj_out."), (r"^head\.modulation$", "scale_shift_table"),
             (r"\.modulation$", ".scale_shift_table"),
             (r"\.self_attn\.", ".attn1."), (r"\.cross_attn\.", ".attn2."),
             (r"\.attn(\d)\.([qkv])\.", r".attn\1.to_\2."), (r"\.attn(\d)\.o\.", r".attn\1.to_out.0."),
             (r"\.norm3\.", ".norm2."), (r"\.ffn\.0\.", ".ffn.net.0.proj."), (r"\.ffn\.2\.", ".ffn.net.2.")]
    out = {}
    for key, value in sd.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def test_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=48, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=128, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024).eval()
    model = randomise(WanDiT(TINY))
    ref.load_state_dict(to_diffusers(model.state_dict()), strict=True)
    x, t, context = inputs()
    with torch.no_grad():
        ours = model(x, t, context)
        theirs = ref(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]
        assert ours.abs().max() > 1
        assert (ours - theirs).abs().max() < 1e-4
        # Per-frame t against diffusers' per-token t (each frame's value repeated over its tokens).
        t_frames = torch.tensor([[900.0, 400.0, 30.0], [10.0, 500.0, 999.0]])
        ours = model(x, t_frames, context)
        theirs = ref(hidden_states=x, timestep=t_frames.repeat_interleave(16, dim=1),
                     encoder_hidden_states=context, return_dict=False)[0]
        assert (ours - theirs).abs().max() < 1e-4


@torch.no_grad()
def test_per_frame_time():
    model = randomise(WanDiT(tiny(window=(1, 64, 64))))  # no attention across frames
    x, t, context = inputs(frames=4)
    scalar = model(x, t, context)
    per_frame = t[:, None].expand(-1, 4).contiguous()
    assert torch.equal(model(x, per_frame, context), scalar)
    changed = per_frame.clone()
    changed[:, 2] = 999.0 - changed[:, 2]
    out = model(x, changed, context)
    diff = (out - scalar).abs().amax(dim=(1, 3, 4))  # [B, F]
    assert (diff[:, 2] > 1e-2).all()
    assert diff[:, [0, 1, 3]].max() == 0  # frames that cannot see frame 2 are untouched
    with pytest.raises(ValueError, match="expected"):
        model(x, torch.zeros(2, 3), context)


@torch.no_grad()
def test_covering_window_equals_full_attention():
    full = randomise(WanDiT(TINY))
    x, t, context = inputs(frames=3)  # token grid (3, 4, 4)
    ref = full(x, t, context)
    for window in [(3, 4, 4), (8, 8, 8)]:
        windowed = WanDiT(tiny(window=window))
        windowed.load_state_dict(full.state_dict())
        torch.testing.assert_close(windowed(x, t, context), ref, atol=1e-6, rtol=1e-6)
    small = WanDiT(tiny(window=(2, 2, 2)))
    small.load_state_dict(full.state_dict())
    assert (small(x, t, context) - ref).abs().max() > 1e-3


@torch.no_grad()
def test_windowed_flex_matches_sdpa():
    model = randomise(WanDiT(tiny(window=(2, 2, 2))))
    x, t, context = inputs(frames=4)
    ref = model(x, t, context)
    model.attention_backend = "flex"
    torch.testing.assert_close(model(x, t, context), ref, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_cross_kv_cache():
    model = randomise(WanDiT(TINY))
    x, t, context = inputs()
    ref = model(x, t, context)
    assert torch.equal(model(x, t, cross_kv=model.cross_kv(context)), ref)
    one = model(x[:1].expand(2, -1, -1, -1, -1), t[:1].expand(2), cross_kv=model.cross_kv(context[:1]))
    torch.testing.assert_close(one[1], ref[0], atol=2e-5, rtol=1e-5)


@torch.no_grad()
def test_context_padding():
    model = randomise(WanDiT(TINY))
    x, t, context = inputs(text=5)
    padded = torch.cat([context, torch.zeros(2, TINY.text_len - 5, TINY.text_dim)], dim=1)
    assert torch.equal(model(x, t, context), model(x, t, padded))
    with pytest.raises(ValueError, match="text_len"):
        model(x, t, torch.zeros(2, TINY.text_len + 1, TINY.text_dim))


def test_rope_matches_wan_tables():
    """Wan: complex tables polar(1, pos * 10000^(-2i/dim)) in float64 per axis, positions < 1024."""
    head_dim, grid = 128, (1000, 2, 3)
    cos, sin = rope_table(grid, head_dim, torch.device("cpu"))
    dims = (44, 42, 42)
    tables = [torch.polar(torch.ones(1024, d // 2, dtype=torch.float64),
                          torch.outer(torch.arange(1024, dtype=torch.float64),
                                      1.0 / torch.pow(10000, torch.arange(0, d, 2, dtype=torch.float64) / d)))
              for d in dims]
    for f, h, w in [(0, 0, 0), (999, 1, 2), (517, 0, 1)]:
        i = (f * grid[1] + h) * grid[2] + w
        ref = torch.cat([tables[0][f], tables[1][h], tables[2][w]])
        torch.testing.assert_close(cos[i, 0], ref.real.float())
        torch.testing.assert_close(sin[i, 0], ref.imag.float())
        q = torch.randn(1, 1, 1, head_dim, dtype=torch.float64)
        rotated = torch.view_as_real(torch.view_as_complex(q.view(1, 1, 1, -1, 2)) * ref).flatten(-2)
        torch.testing.assert_close(apply_rope(q.float(), (cos[i:i + 1], sin[i:i + 1])), rotated.float())


@torch.no_grad()
def test_bf16_runs_with_float32_residual():
    model = randomise(WanDiT(tiny(window=(2, 2, 2))))
    x, t, context = inputs()
    ref = model(x, t, context)
    model.to(torch.bfloat16)
    dtypes = []
    model.blocks[0].register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    out = model(x.bfloat16(), t, context.bfloat16())
    assert out.dtype == torch.float32 and dtypes == [torch.float32]
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() / ref.abs().max() < 0.1


def test_gradient_checkpointing_same_gradients():
    model = randomise(WanDiT(TINY)).train()
    x, t, context = inputs(batch=1)
    model(x, t, context).square().mean().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing = True
    model(x, t, context).square().mean().backward()
    for a, p in zip(ref, model.parameters()):
        torch.testing.assert_close(p.grad, a, atol=1e-6, rtol=1e-5)


def test_init_weights_seeded():
    a, b = WanDiT(TINY), WanDiT(TINY)
    a.init_weights(3), b.init_weights(3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.head.head.weight.abs().max() == 0


def test_bad_input_size():
    model = WanDiT(TINY)
    x, t, context = inputs(size=8)
    with pytest.raises(ValueError, match="patch_size"):
        model(x[..., :7], t, context)


def test_training_after_inference_mode():
    """Cached RoPE tables and window masks made under inference_mode still serve autograd later."""
    model = randomise(WanDiT(tiny(window=(2, 2, 2), num_layers=1)))
    x, t, context = inputs(frames=5)  # a grid no other test uses
    with torch.inference_mode():
        model(x, t, context)
    model(x, t, context).sum().backward()
    assert model.blocks[0].self_attn.q.weight.grad is not None
