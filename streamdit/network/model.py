"""Wan 2.1 DiT with per-frame time conditioning and optional 3D shifted-window self-attention.

Parameter names and shapes are Wan 2.1's original ones, so a Wan 2.1 text-to-video state dict
loads with strict=True. Dtypes follow Wan: the time embedding, modulation and head run in float32,
norms compute in float32, and the gated residual adds promote the residual stream to float32 after
block 0 when the weights are bf16. Frame positions for RoPE are indices in the input buffer.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import WindowMask, attention
from .config import ModelConfig

if TYPE_CHECKING:
    from ..sampling.causal import CacheLayer

CrossKV = list[tuple[Tensor, Tensor]]  # per block: cross-attention k, v [B, text_len, heads, head_dim]


def _no_autocast(x: Tensor):
    return torch.autocast(x.device.type, enabled=False)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Wan's sinusoid [cos | sin] of t * 10000^(-i/half), computed in float64, returned float32."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.double()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).float()


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of each RoPE axis (frames, rows, cols): Wan's split of head_dim."""
    return head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6)


def _rope_freqs(dim: int, device: torch.device) -> Tensor:
    return 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)


@functools.lru_cache(maxsize=16)
def rope_table(grid: tuple[int, int, int], head_dim: int, device: torch.device, start: int = 0,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """cos, sin [L, 1, head_dim/2] for a frame-major token grid; Wan's [t | h | w] split.

    start: position of the first frame (a cached stream continues after the frames it has seen); dtype
    float32 as Wan, float64 for float64 models (exactness tests)."""
    axis_dims = rope_axis_dims(head_dim)
    angles = []
    with torch.inference_mode(False):  # cached: must stay usable by autograd later
        for axis, (size, dim) in enumerate(zip(grid, axis_dims)):
            freqs = _rope_freqs(dim, device)
            first = start if axis == 0 else 0
            a = torch.arange(first, first + size, dtype=torch.float64, device=device)[:, None] * freqs  # [size, dim/2]
            shape = [1, 1, 1, dim // 2]
            shape[axis] = size
            angles.append(a.view(shape).expand(*grid, dim // 2))
        angles = torch.cat(angles, dim=-1).reshape(-1, 1, head_dim // 2)  # [L, 1, d/2]
        return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def frame_rotation(delta: int, head_dim: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """cos, sin [1, 1, head_dim/2] turning keys by `delta` frame positions (rows and cols unchanged):
    apply_rope(k at position p, frame_rotation(delta)) is k at position p + delta."""
    dims = rope_axis_dims(head_dim)
    angles = torch.cat([delta * _rope_freqs(dims[0], device),
                        torch.zeros((dims[1] + dims[2]) // 2, dtype=torch.float64, device=device)])
    return torch.cos(angles).to(dtype).view(1, 1, -1), torch.sin(angles).to(dtype).view(1, 1, -1)


def _rope_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def apply_rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate adjacent channel pairs of x [B, L, n, d] in float32 (float64 for float64 x); returns x's dtype."""
    cos, sin = rope
    x0, x1 = x.to(torch.promote_types(x.dtype, torch.float32)).unflatten(-1, (-1, 2)).unbind(-1)  # [B, L, n, d/2]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


class FP32Linear(nn.Linear):
    """Linear computed in float32 whatever the weights' dtype (time embedding, projection, head)."""

    def forward(self, x: Tensor) -> Tensor:
        with _no_autocast(x):
            bias = None if self.bias is None else self.bias.float()
            return F.linear(x.float(), self.weight.float(), bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        with _no_autocast(x):
            y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32, returned in float32 (feeds float32 modulation)."""

    def forward(self, x: Tensor) -> Tensor:
        with _no_autocast(x):
            weight = None if self.weight is None else self.weight.float()
            bias = None if self.bias is None else self.bias.float()
            return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x [B, L, dim] * (1 + scale) + shift, with shift/scale [B, F, 1, dim] per frame."""
    return (x.unflatten(1, (shift.shape[1], -1)) * (1 + scale) + shift).flatten(1, 2)


def gate(y: Tensor, g: Tensor) -> Tensor:
    """y [B, L, dim] * g [B, F, 1, dim] per frame, in float32."""
    return (y.unflatten(1, (g.shape[1], -1)) * g).flatten(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: WindowMask | Tensor | None, backend: str,
                layer: CacheLayer | None = None) -> Tensor:
        """With a cache layer (causal streaming), the keys and values attended to are the ones its plan for
        this call gives: this call's tokens and the cached ones."""
        x = x.to(self.q.weight.dtype)
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))  # [B, L, n, d]
        k = self.norm_k(self.k(x)).unflatten(-1, (self.num_heads, -1))
        v = self.v(x).unflatten(-1, (self.num_heads, -1))
        if layer is None:
            k = apply_rope(k, rope)
        else:
            k, v = layer.attend(k, v, rope)  # the layer rotates k (and may keep it un-rotated: an anchor)
        return self.o(attention(apply_rope(q, rope), k, v, mask, backend).flatten(2))


class CrossAttention(SelfAttention):
    """Wan's text cross-attention: q/k RMSNorm across heads, no RoPE, no mask."""

    def kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        k = self.norm_k(self.k(context)).unflatten(-1, (self.num_heads, -1))  # [B, text_len, n, d]
        return k, self.v(context).unflatten(-1, (self.num_heads, -1))

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], backend: str) -> Tensor:
        x = x.to(self.q.weight.dtype)
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))
        k, v = kv
        if k.shape[0] != q.shape[0]:  # one cached prompt for a whole batch
            k, v = (t.expand(q.shape[0], *t.shape[1:]).contiguous() for t in kv)
        return self.o(attention(q, k, v, None, backend).flatten(2))


class WanBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: Tensor, e0: Tensor, kv: tuple[Tensor, Tensor] | Tensor, rope: tuple[Tensor, Tensor],
                mask: WindowMask | Tensor | None, backend: str, layer: CacheLayer | None = None) -> Tensor:
        """kv: cached cross-attention (k, v), or the embedded context [B, text_len, dim] to project here
        (inside the block's forward, so FSDP2 has gathered this block's weights)."""
        if isinstance(kv, Tensor):
            kv = self.cross_attn.kv(kv)
        # e0 [B, F, 6, dim] -> six [B, F, 1, dim], float32
        shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn = (
            (self.modulation.float() + e0).unsqueeze(3).unbind(2))
        x = x + gate(self.self_attn(modulate(self.norm1(x), shift_msa, scale_msa), rope, mask, backend, layer),
                     gate_msa)
        x = x + self.cross_attn(self.norm3(x), kv, backend)
        x = x + gate(self.ffn(modulate(self.norm2(x), shift_ffn, scale_ffn).to(self.ffn[0].weight.dtype)), gate_ffn)
        return x


class Head(nn.Module):
    def __init__(self, dim: int, out_channels: int, eps: float):
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.head = FP32Linear(dim, out_channels)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        shift, scale = (self.modulation.float() + e.unsqueeze(2)).unsqueeze(3).unbind(2)  # [B, F, 1, dim]
        return self.head(modulate(self.norm(x), shift, scale))


class FrameRefiner(nn.Module):
    """Per-frame 3x3 convolutions on the unpatchified output, given the noisy input beside it and the frame's
    time embedding: v + conv(silu(conv(silu(film(conv([v, x])))))). A token of a p x p patch draws its cells
    alone; these see across token borders (a 7x7-cell field). The last conv starts at zero: a new refiner
    leaves the network's output as it was (growing a trained model)."""

    def __init__(self, channels: int, in_channels: int, hidden: int, dim: int):
        super().__init__()
        self.conv_in = nn.Conv2d(channels + in_channels, hidden, 3, padding=1)
        self.film = FP32Linear(dim, 2 * hidden)
        self.conv_mid = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv_out = nn.Conv2d(hidden, channels, 3, padding=1)

    def reset_parameters(self, gen: torch.Generator | None = None) -> None:
        for conv in (self.conv_in, self.conv_mid):
            nn.init.kaiming_uniform_(conv.weight.flatten(1), a=5**0.5, generator=gen)
            nn.init.zeros_(conv.bias)
        for p in (self.film.weight, self.film.bias, self.conv_out.weight, self.conv_out.bias):
            nn.init.zeros_(p)

    def forward(self, v: Tensor, x: Tensor, e: Tensor) -> Tensor:
        """v [B, c, F, H, W] float32, x [B, in, F, H, W] (the input), e [B, F, dim] -> v refined, float32."""
        b, f = v.shape[0], v.shape[2]
        dtype = self.conv_in.weight.dtype
        frames = torch.cat([v, x.float()], 1).transpose(1, 2).flatten(0, 1).to(dtype)  # [B*F, c+in, H, W]
        scale, shift = self.film(F.silu(e)).flatten(0, 1)[:, :, None, None].chunk(2, 1)  # [B*F, hidden, 1, 1]
        h = F.silu(self.conv_in(frames).float() * (1 + scale) + shift).to(dtype)
        h = self.conv_out(F.silu(self.conv_mid(h)))
        return v + h.float().unflatten(0, (b, f)).transpose(1, 2)


class WanDiT(nn.Module):
    """Wan 2.1 text-to-video DiT; t may be [B] or [B, frames] (sigma * 1000, one value per latent frame)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = self.config = config.validate()
        self.attention_backend = "auto"  # the default of calls that name no backend
        self.gradient_checkpointing = False
        self.compile_enabled = False  # use_compile(): the default of calls that do not say
        self._compile_options: dict = {"dynamic": False}  # a stream uses few shapes: specialise each
        self._core: CompiledCore | None = None  # made on the first compiled call, shared by every caller
        dim, patch = cfg.dim, cfg.patch_size
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=patch, stride=patch)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(FP32Linear(cfg.freq_dim, dim), nn.SiLU(), FP32Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), FP32Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(dim, math.prod(patch) * cfg.out_dim, cfg.eps)
        self.refiner = FrameRefiner(cfg.out_dim, cfg.in_dim, cfg.head_conv, dim) if cfg.head_conv else None
        self.init_weights()

    def init_weights(self, seed: int | None = None) -> None:
        """Wan's init: xavier linears and patch conv, normal(0.02) embeddings, zero head output."""
        gen, device = None, self.patch_embedding.weight.device
        if seed is not None and device.type != "meta":
            gen = torch.Generator(device).manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, generator=gen)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1), generator=gen)
        nn.init.zeros_(self.patch_embedding.bias)
        for m in (*self.text_embedding, *self.time_embedding):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02, generator=gen)
        with torch.no_grad():
            for p in (*(block.modulation for block in self.blocks), self.head.modulation):
                p.copy_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) / self.config.dim**0.5)
        nn.init.zeros_(self.head.head.weight)
        if self.refiner is not None:
            self.refiner.reset_parameters(gen)

    def embed_text(self, context: Tensor) -> Tensor:
        """[B, <=text_len, text_dim] -> [B, text_len, dim], zero-padded before the embedding as in Wan."""
        length = self.config.text_len
        if context.shape[1] > length:
            raise ValueError(f"context has {context.shape[1]} tokens, more than text_len={length}; "
                             "truncate the prompt embedding or use a model with a longer text_len")
        context = F.pad(context, (0, 0, 0, length - context.shape[1]))
        return self.text_embedding(context.to(self.text_embedding[0].weight.dtype))

    def cross_kv(self, context: Tensor) -> CrossKV:
        """Per-block cross-attention K/V for a context; pass to forward(cross_kv=...) to reuse."""
        c = self.embed_text(context)
        return [block.cross_attn.kv(c) for block in self.blocks]

    def window_mask(self, grid: tuple[int, int, int], layer: int) -> WindowMask | None:
        if self.config.window is None:
            return None
        return WindowMask.for_layer(grid, self.config.window, layer)

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """[B, L, pt*ph*pw*c] (c fastest) -> [B, c, F*pt, H*ph, W*pw]."""
        (f, h, w), (pt, ph, pw) = grid, self.config.patch_size
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, -1)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(x.shape[0], -1, f * pt, h * ph, w * pw)

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None, cross_kv: CrossKV | None = None, *,
                backend: str | None = None, compiled: bool | None = None) -> Tensor:
        """x [B, C, F, H, W], t [B] or [B, F], context [B, <=text_len, text_dim] -> v [B, out_dim, F, H, W] float32.

        backend (attention kernel) and compiled (torch.compile) are choices of this call; None: the model's
        defaults (attention_backend, use_compile). Callers that share one model choose per call, never by
        setting the model."""
        b, pt = x.shape[0], self.config.patch_size
        if any(s % p for s, p in zip(x.shape[2:], pt)):
            raise ValueError(f"input frames/height/width {tuple(x.shape[2:])} are not multiples of patch_size {pt}")
        grid = tuple(s // p for s, p in zip(x.shape[2:], pt))  # token grid (F, H, W)
        t = t.to(x.device).reshape(-1, 1) if t.ndim < 2 else t.to(x.device)
        if t.ndim != 2 or t.shape[0] not in (1, b) or t.shape[1] not in (1, grid[0]):
            raise ValueError(f"t has shape {tuple(t.shape)}; expected [{b}] or [{b}, {grid[0]}] (one per token frame)")
        t = t.expand(b, grid[0])
        if cross_kv is None:
            if context is None:
                raise ValueError("pass context [B, L, text_dim] or cross_kv from model.cross_kv(context)")
            cross_kv = [self.embed_text(context)] * len(self.blocks)  # embedded text: each block projects its K/V

        rope = rope_table(grid, self.config.head_dim, x.device, dtype=_rope_dtype(x))
        masks = [self.window_mask(grid, i) for i in range(len(self.blocks))]
        return self._runner(compiled)(x, t, cross_kv, rope, masks, grid, backend or self.attention_backend)

    def _runner(self, compiled: bool | None):
        if not (self.compile_enabled if compiled is None else compiled):
            return self._run
        if self._core is None:
            self._core = CompiledCore(self._run, self._compile_options)
        return self._core

    def _run(self, x: Tensor, t: Tensor, contexts: list, rope: tuple[Tensor, Tensor],
             masks: list[WindowMask | Tensor | None], grid: tuple[int, int, int], backend: str, cache=None) -> Tensor:
        """The network proper on validated inputs (the part handed to torch.compile); with a KV cache
        (streamdit.sampling.causal.KVCache), each block's self-attention goes through its layer of the cache.
        contexts: per block, the cross-attention (k, v) from cross_kv() or the embedded text it projects itself."""
        x_in = x
        x = self.patch_embedding(x.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)  # [B, L, dim]
        e = self.time_embedding(timestep_embedding(t, self.config.freq_dim))  # [B, F, dim] float32
        e0 = self.time_projection(e).unflatten(-1, (6, -1))  # [B, F, 6, dim]
        for i, (block, kv, mask) in enumerate(zip(self.blocks, contexts, masks)):
            args = (x, e0, kv, rope, mask, backend, None if cache is None else cache.layer(i))
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        v = self.unpatchify(self.head(x, e), grid)
        if self.refiner is not None:
            v = self.refiner(v, x_in, e.repeat_interleave(self.config.patch_size[0], 1))
        return v

    @torch.no_grad()
    def forward_cached(self, x: Tensor, t: Tensor, context: Tensor, cache, mask: Tensor | None = None, *,
                       backend: str | None = None) -> Tensor:
        """Causal streaming: x [1, C, F, H, W] (frames that follow the cached ones), t [1, F], context
        [1, <=text_len, text_dim] -> v [1, out_dim, F, H, W] float32.

        cache (streamdit.sampling.causal.KVCache) gives each block its cached keys/values and, in its plan for this
        call, the RoPE position of the first frame; mask (bool [L, L + cached tokens], True = attend) restricts
        attention among the frames of this call (block-causal chunks); None lets every token see them all."""
        pt = self.config.patch_size
        if self.config.window is not None:
            raise ValueError("a windowed-attention model cannot stream causally: its windows assume the whole buffer")
        if x.shape[0] != 1:
            raise ValueError(f"causal streaming runs one stream per call (batch 1), got batch {x.shape[0]}")
        if any(s % p for s, p in zip(x.shape[2:], pt)):
            raise ValueError(f"input frames/height/width {tuple(x.shape[2:])} are not multiples of patch_size {pt}")
        grid = tuple(s // p for s, p in zip(x.shape[2:], pt))
        t = t.to(x.device).reshape(1, -1).expand(1, grid[0])
        embedded = [self.embed_text(context)] * len(self.blocks)
        # not through rope_table's cache: the start moves every chunk, and at 832x480 each table is 2.4 MB
        rope = rope_table.__wrapped__(grid, self.config.head_dim, x.device, cache.plan.start, _rope_dtype(x))
        return self._run(x, t, embedded, rope, [mask] * len(self.blocks), grid, backend or self.attention_backend,
                         cache)

    def use_compile(self, enabled: bool = True, **options) -> WanDiT:
        """Run the network through torch.compile (inductor) from the next call on (enabled=False: eager).

        Inference only: the first call of each input shape compiles (tens of seconds on a CPU; cached
        on disk by torch for later processes), later calls run the fused kernels. Where compiling
        fails (no C++ compiler, an unsupported backend) the model warns once and stays eager."""
        options.setdefault("dynamic", False)
        if enabled and (options != self._compile_options or self._core is None or self._core.failed):
            self._compile_options, self._core = options, None  # other options, or a retry: compile afresh
        self.compile_enabled = bool(enabled)
        return self

    @property
    def compiled(self) -> bool:
        """The network runs compiled: enabled and not fallen back to eager."""
        return self.compile_enabled and not (self._core is not None and self._core.failed)


class CompiledCore:
    """torch.compile of a function, falling back to the eager function (with one warning) if compiling fails."""

    def __init__(self, fn, options: dict):
        self.fn, self.failed = fn, False
        self.compiled = torch.compile(fn, **options)

    def __call__(self, *args) -> Tensor:
        if self.failed or torch.is_grad_enabled():  # training stays eager: compiled graphs here are for inference
            return self.fn(*args)
        try:
            return self.compiled(*args)
        except Exception as exc:
            if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise  # not the compiler's: the eager model would fail the same way
            self.failed = True
            detail = " ".join(str(exc).split())[:300]
            warnings.warn(f"torch.compile failed, running the model eagerly instead ({type(exc).__name__}: {detail}). "
                          "Install a C++ compiler (CPU) or Triton (GPU) to use compile.", stacklevel=3)
            return self.fn(*args)


def grow_refiner(model: WanDiT, hidden: int, seed: int | None = None) -> WanDiT:
    """model with a FrameRefiner of `hidden` channels added (a new WanDiT holding the same weights); its output is
    the model's until the refiner trains (the refiner's last conv starts at zero). A model with that refiner is
    returned as it is; one with a refiner of another width is refused."""
    have = model.config.head_conv
    if have == hidden:
        return model
    if have:
        raise ValueError(f"the model has a refiner of {have} channels, not {hidden}: use head_conv={have}")
    grown = WanDiT(dataclasses.replace(model.config, head_conv=hidden))
    grown.init_weights(seed)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("refiner.") for k in missing):
        raise ValueError(f"cannot grow a refiner: unexpected {unexpected}, missing {missing}")
    first = next(model.parameters())
    return grown.to(first.device, first.dtype).train(model.training)


def count_parameters(config: ModelConfig) -> int:
    """Parameter count of WanDiT(config), built on the meta device (no memory)."""
    with torch.device("meta"):
        model = WanDiT(config)
    return sum(p.numel() for p in model.parameters())
