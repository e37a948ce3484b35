"""One attention function, several kernels, and the 3D window mask of StreamDiT's self-attention.

Layout everywhere is Wan's: q, k, v and the output are [B, L, heads, head_dim].

Backends (``available_backends(device)`` lists the usable ones):
- ``sdpa``: reference. torch SDPA, dense boolean mask when windowed; CPU and CUDA, with gradients.
- ``sdpa-cudnn``: CUDA. SDPA with cuDNN, then flash, then memory-efficient kernels preferred.
- ``xformers``: CUDA, only if ``xformers.ops`` imports and runs (probed once).
- ``flex``: FlexAttention with a BlockMask that skips empty windows; compiled on CUDA, eager
  (forward only, for parity tests) on CPU. Without a mask it runs the dense SDPA kernels.
- ``auto``: the default set by ``set_default_backend``, else CPU -> sdpa; CUDA -> flex when
  windowed, otherwise xformers when available, else sdpa-cudnn.

Window decision (non-cyclic shift). Windows are non-overlapping boxes over the token grid
(F, H, W), flattened frame-major. A shifted layer offsets the window grid by ``shift`` (half a
window) instead of rolling the tokens: the window id along an axis is ``(pos + shift) // window``,
so the windows at the edges are smaller, and two tokens attend iff their ids agree on all three
axes. A cyclic (Swin) roll along time would join the newest, noisiest frames with the oldest,
cleanest ones through the wrap-around; this grid never does. Training and inference share this
code, so they agree. A window that covers the grid on an axis has no shift on that axis, so a
window covering the whole grid is exactly full attention.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("auto", "sdpa", "sdpa-cudnn", "xformers", "flex")
_default_backend = "auto"


@dataclass(frozen=True)
class WindowMask:
    """Non-cyclic 3D windows over a frame-major token grid; normalised so equal masks compare equal."""

    grid: tuple[int, int, int]  # tokens (frames, rows, cols)
    window: tuple[int, int, int]
    shift: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        window = tuple(max(1, min(int(w), int(g))) for w, g in zip(self.window, self.grid))
        shift = tuple(0 if w >= g else int(s) % w for s, w, g in zip(self.shift, window, self.grid))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "shift", shift)

    @classmethod
    def for_layer(cls, grid: tuple[int, int, int], window: tuple[int, int, int], layer: int) -> WindowMask:
        """Even layers unshifted, odd layers shifted by half a window on every axis."""
        shift = tuple(w // 2 for w in window) if layer % 2 else (0, 0, 0)
        return cls(tuple(grid), tuple(window), shift)

    @property
    def seq_len(self) -> int:
        f, h, w = self.grid
        return f * h * w

    @property
    def is_full(self) -> bool:
        return self.window == self.grid

    def window_ids(self, idx: Tensor) -> Tensor:
        """Window id of each flattened token index (works on any integer tensor, also inside flex)."""
        (_, gh, gw), (wf, wh, ww), (sf, sh, sw) = self.grid, self.window, self.shift
        n_h, n_w = (gh - 1 + sh) // wh + 1, (gw - 1 + sw) // ww + 1  # windows along h and w
        f, h, w = idx // (gh * gw), (idx // gw) % gh, idx % gw
        return ((f + sf) // wf * n_h + (h + sh) // wh) * n_w + (w + sw) // ww

    @property
    def mask_mod(self):
        """FlexAttention mask_mod(b, h, q_idx, kv_idx): True where query and key share a window."""

        def same_window(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return self.window_ids(q_idx) == self.window_ids(kv_idx)

        return same_window

    def dense(self, device: torch.device | str = "cpu") -> Tensor:
        """bool [L, L], True = attend (cached per mask and device)."""
        return _dense(self, torch.device(device))

    def block_mask(self, device: torch.device | str = "cpu"):
        """FlexAttention BlockMask (cached per mask and device)."""
        return _block_mask(self, torch.device(device))


@functools.lru_cache(maxsize=8)
def _dense(mask: WindowMask, device: torch.device) -> Tensor:
    with torch.inference_mode(False):  # cached: must stay usable by autograd later
        ids = mask.window_ids(torch.arange(mask.seq_len, device=device))
        return ids[:, None] == ids[None, :]


@functools.lru_cache(maxsize=32)
def _block_mask(mask: WindowMask, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    with torch.inference_mode(False):
        return create_block_mask(mask.mask_mod, None, None, mask.seq_len, mask.seq_len, device=device)


# ---------------------------------------------------------------------------------------------
# Backends. Each takes [B, L, n, d] tensors and an optional (non-full) WindowMask.


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: WindowMask | None) -> Tensor:
    attn_mask = None if mask is None else mask.dense(q.device)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask)
    return out.transpose(1, 2)


def _sdpa_cudnn(q: Tensor, k: Tensor, v: Tensor, mask: WindowMask | None) -> Tensor:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # MATH last: the flags are process-wide, so a decoder thread's SDPA (e.g. the Wan VAE's fp32 attention with
    # head_dim 384) runs under them too and must always find a kernel
    kernels = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    try:
        context = sdpa_kernel(kernels, set_priority=True)
    except TypeError:  # older torch: no priority, just the allowed set
        context = sdpa_kernel(kernels)
    with context:
        return _sdpa(q, k, v, mask)


@functools.lru_cache(maxsize=8)
def _xformers_bias(mask: WindowMask, device: torch.device, dtype: torch.dtype) -> Tensor:
    length = mask.seq_len
    padded = -(-length // 8) * 8  # xformers wants the bias rows 16-byte aligned
    with torch.inference_mode(False):
        bias = torch.zeros(length, padded, device=device, dtype=dtype)
        bias[:, :length].masked_fill_(~mask.dense(device), float("-inf"))
        return bias[:, :length]


def _xformers(q: Tensor, k: Tensor, v: Tensor, mask: WindowMask | None) -> Tensor:
    import xformers.ops as xops

    bias = None
    if mask is not None:
        b, n = q.shape[0], q.shape[2]
        bias = _xformers_bias(mask, q.device, q.dtype).expand(b, n, -1, -1)
    return xops.memory_efficient_attention(q, k, v, attn_bias=bias)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q: Tensor, k: Tensor, v: Tensor, mask: WindowMask | None) -> Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    if mask is None:  # nothing to skip: the dense kernels are faster
        return (_sdpa_cudnn if q.is_cuda else _sdpa)(q, k, v, None)
    block_mask = mask.block_mask(q.device)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if q.is_cuda:
        out = _compiled_flex()(q, k, v, block_mask=block_mask)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
            out = flex_attention(q, k, v, block_mask=block_mask)
    return out.transpose(1, 2)


_KERNELS = {"sdpa": _sdpa, "sdpa-cudnn": _sdpa_cudnn, "xformers": _xformers, "flex": _flex}


@functools.lru_cache(maxsize=1)
def xformers_available() -> bool:
    """True if xformers imports and its memory-efficient attention runs on this CUDA device."""
    if not torch.cuda.is_available():
        return False
    try:
        import xformers.ops as xops

        x = torch.zeros(1, 8, 1, 64, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(x, x, x)
        return True
    except Exception:
        return False


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backend names usable on this device, "auto" first."""
    if torch.device(device).type != "cuda":
        return ["auto", "sdpa", "flex"]
    return ["auto", "sdpa", "sdpa-cudnn"] + (["xformers"] if xformers_available() else []) + ["flex"]


def _check(name: str, device: torch.device | str) -> str:
    usable = available_backends(device)
    if name not in usable:
        raise ValueError(f"attention backend {name!r} is not available on {torch.device(device)}; "
                         f"choose one of {', '.join(usable)}")
    return name


def set_default_backend(name: str) -> None:
    """Make "auto" mean this backend (checked against CUDA if present, else CPU); "auto" resets."""
    global _default_backend
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    _default_backend = _check(name, "cuda" if torch.cuda.is_available() else "cpu")


def resolve_backend(backend: str, device: torch.device | str, windowed: bool = False) -> str:
    """The concrete kernel a backend name runs on a device (raises ValueError if unusable)."""
    device = torch.device(device)
    backend = _check(backend, device)
    if backend == "auto" and _default_backend != "auto":
        backend = _check(_default_backend, device)
    if backend != "auto":
        return backend
    if device.type != "cuda":
        return "sdpa"
    if windowed:
        return "flex"
    return "xformers" if xformers_available() else "sdpa-cudnn"


def attention(q: Tensor, k: Tensor, v: Tensor, mask: WindowMask | Tensor | None = None,
              backend: str = "auto") -> Tensor:
    """softmax(q k^T / sqrt(d)) v over [B, L, heads, head_dim], restricted to windows if a mask is given.

    A boolean tensor mask [Lq, Lk] (True = attend; causal streaming's chunk mask) runs through SDPA whatever
    the backend: the window kernels (flex block masks, cached xformers biases) are built for WindowMask."""
    if isinstance(mask, Tensor):
        resolve_backend(backend, q.device)  # an unusable backend name is still an error
        if mask.shape != (q.shape[1], k.shape[1]):
            raise ValueError(f"attention mask {tuple(mask.shape)} does not fit {q.shape[1]} queries and "
                             f"{k.shape[1]} keys")
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask.to(q.device))
        return out.transpose(1, 2)
    if mask is not None and mask.is_full:
        mask = None
    if mask is not None and (q.shape[1] != mask.seq_len or k.shape[1] != mask.seq_len):
        raise ValueError(f"window mask over grid {mask.grid} ({mask.seq_len} tokens) does not fit "
                         f"q of {q.shape[1]} and k of {k.shape[1]} tokens")
    return _KERNELS[resolve_backend(backend, q.device, mask is not None)](q, k, v, mask)
