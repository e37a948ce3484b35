"""The network as a velocity function of the buffer: text conditioning, classifier-free guidance."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..network.text import TextEncoder

Weights = tuple[tuple[str, float], ...]


def network_device(model: nn.Module) -> torch.device:
    """Where the network computes: its own answer where it has one (a host's model that may keep some weights
    elsewhere, see nodes/core_model.py) or where its weights are."""
    dev = getattr(model, "compute_device", None)
    return torch.device(dev) if dev is not None else next(model.parameters()).device


class EmbeddingCache:
    """Text embeddings per prompt, computed only when a prompt is new (LRU)."""

    def __init__(self, encoder: TextEncoder, size: int = 32):
        self.encoder, self.size = encoder, size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def get(self, prompt: str) -> torch.Tensor:
        """[text_len, text_dim] float32 on the encoder's device."""
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        emb = self.encoder.encode([prompt])[0].float()
        self._cache[prompt] = emb
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return emb

    def blend(self, weights: Weights) -> torch.Tensor:
        """Weighted sum of the prompts' embeddings (a transition between two prompts)."""
        return sum(w * self.get(p) for p, w in weights)


class ModelDenoiser:
    """v(x, sigma, prompt weights) for a buffer x [C, F, h, w] with one sigma per frame.

    cfg_scale 1 runs one pass; otherwise the conditional and negative-prompt branches run as a
    batch of two and v = v_neg + cfg (v_cond - v_neg).
    """

    def __init__(self, model: nn.Module, text: EmbeddingCache, cfg_scale: float = 1.0,
                 negative_prompt: str = "", dtype: torch.dtype | None = None, backend: str | None = None,
                 compiled: bool | None = None):
        self.model, self.text = model, text
        self.cfg_scale, self.negative_prompt = float(cfg_scale), negative_prompt
        self.dtype = dtype or next(model.parameters()).dtype
        # this stream's attention kernel and torch.compile choice (None: the model's defaults); the model itself,
        # shared by every stream on it, is never changed
        self.set_runtime(backend, compiled)
        self.calls = 0

    def set_runtime(self, backend: str | None, compiled: bool | None) -> None:
        """Attention kernel and torch.compile for later calls (same numbers up to the kernels' rounding)."""
        self.run = {k: v for k, v in dict(backend=backend, compiled=compiled).items() if v is not None}

    def set_guidance(self, cfg_scale: float, negative_prompt: str) -> None:
        """From the next call on (the negative prompt's embedding is made, or refused, here)."""
        self.text.get(negative_prompt)
        self.cfg_scale, self.negative_prompt = float(cfg_scale), negative_prompt

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, weights: Weights) -> torch.Tensor:
        dev = network_device(self.model)
        t = (sigma * 1000).to(torch.float32).to(dev).unsqueeze(0)  # [1, F]
        cond = self.text.blend(weights).to(dev).unsqueeze(0)
        xb = x.to(dev, self.dtype).unsqueeze(0)
        self.calls += 1
        if self.cfg_scale == 1.0:
            return self.model(xb, t, cond.to(self.dtype), **self.run)[0].float()
        neg = self.text.get(self.negative_prompt).to(dev).unsqueeze(0)
        # contiguous copies: stride-0 (expanded) batches take slow paths through the network (~15% here)
        both = self.model(xb.repeat(2, 1, 1, 1, 1), t.repeat(2, 1), torch.cat([cond, neg]).to(self.dtype), **self.run)
        v_cond, v_neg = both.float().unbind(0)
        return v_neg + self.cfg_scale * (v_cond - v_neg)
