"""Text encoders: the toy model's tiny word-level encoder, and the registry used by checkpoints.

Every encoder maps prompts to embeddings [B, text_len, text_dim]; rows past the prompt's tokens are
zero (as Wan pads umT5 output), and the empty prompt encodes to all zeros: the unconditional branch.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

_WORD = re.compile(r"[a-z]+")
# the toy world's caption words (streamdit.toyworld.VOCABULARY, kept equal by a test): the engine never
# imports the toy world, so a random toy model reads them from here
TOY_VOCABULARY = Path(__file__).resolve().parents[1] / "assets" / "toy-vocabulary.txt"


def toy_vocabulary() -> list[str]:
    """The 78 words of the toy world, the vocabulary of the toy text encoder."""
    return TOY_VOCABULARY.read_text().split()


class TextEncoder(nn.Module):
    """Interface: encode(prompts) -> [B, text_len, text_dim]; spec is stored in checkpoints."""

    text_dim: int
    text_len: int

    @property
    def spec(self) -> dict:
        raise NotImplementedError

    def encode(self, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError


class ToyTextEncoder(TextEncoder):
    """Word embeddings + learned positions + a small transformer; the vocabulary is fixed data."""

    def __init__(self, vocab: list[str], text_dim: int, text_len: int, layers: int = 2, heads: int = 2):
        super().__init__()
        if len(set(vocab)) != len(vocab) or any(not _WORD.fullmatch(w) for w in vocab):
            raise ValueError("vocab must be distinct lowercase words (a-z)")
        self.vocab = list(vocab)
        self.index = {w: i + 1 for i, w in enumerate(self.vocab)}  # 0 = padding
        self.text_dim, self.text_len, self.layers, self.heads = text_dim, text_len, layers, heads
        self.tokens = nn.Embedding(len(vocab) + 1, text_dim, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(text_len, text_dim))
        layer = nn.TransformerEncoderLayer(text_dim, heads, 2 * text_dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(text_dim)
        nn.init.normal_(self.tokens.weight, std=0.5)
        nn.init.normal_(self.positions, std=0.02)

    @property
    def spec(self) -> dict:
        return {"kind": "toy", "vocab": self.vocab, "text_dim": self.text_dim, "text_len": self.text_len,
                "layers": self.layers, "heads": self.heads}

    def tokenize(self, prompt: str) -> list[int]:
        words = _WORD.findall(prompt.lower())
        unknown = sorted({w for w in words if w not in self.index})
        if unknown:
            raise ValueError(f"unknown word(s) {', '.join(repr(w) for w in unknown)} in prompt {prompt!r}; "
                             f"this model knows: {', '.join(self.vocab)}")
        if len(words) > self.text_len:
            raise ValueError(f"prompt {prompt!r} has {len(words)} words; this model reads at most {self.text_len}")
        return [self.index[w] for w in words]

    def encode(self, prompts: list[str]) -> torch.Tensor:
        dev = self.positions.device
        ids = torch.zeros(len(prompts), self.text_len, dtype=torch.long, device=dev)
        for i, prompt in enumerate(prompts):
            tok = self.tokenize(prompt)
            ids[i, :len(tok)] = torch.tensor(tok, dtype=torch.long)
        keep = ids > 0  # [B, L]
        x = self.tokens(ids) + self.positions
        # An all-padding row would give NaN under a key mask; unmask those rows and zero them below.
        pad = ~keep & keep.any(dim=1, keepdim=True)
        x = self.norm(self.encoder(x, src_key_padding_mask=pad))
        return x * keep.unsqueeze(-1).to(x.dtype)


class ExternalTextEncoder(TextEncoder):
    """Embeddings made outside the checkpoint (ComfyUI's umT5 for Wan 2.1, or precomputed).

    fn(prompt) -> [L, text_dim] (or [1, L, text_dim]) for the prompt's tokens. As Wan does with umT5 output,
    rows past text_len are cut and the rest is zero-padded to text_len. Nothing is stored in checkpoints.
    """

    def __init__(self, fn: Callable[[str], torch.Tensor], text_dim: int, text_len: int, name: str = "external"):
        super().__init__()
        self.fn, self.text_dim, self.text_len, self.name = fn, int(text_dim), int(text_len), name

    @property
    def spec(self) -> dict:
        return {"kind": "external", "name": self.name}

    def encode(self, prompts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.text_len, self.text_dim)
        for i, prompt in enumerate(prompts):
            emb = torch.as_tensor(self.fn(prompt))
            if emb.ndim == 3 and emb.shape[0] == 1:
                emb = emb[0]
            if emb.ndim != 2 or emb.shape[1] != self.text_dim:
                raise ValueError(f"the text encoder ({self.name}) gave embeddings of shape {tuple(emb.shape)} for "
                                 f"{prompt!r}; this model needs [tokens, {self.text_dim}] (for Wan 2.1: a umT5-XXL "
                                 "encoder, e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors loaded with type 'wan')")
            n = min(emb.shape[0], self.text_len)
            out[i, :n] = emb[:n].float().cpu()
        return out


def hashed_text_encoder(text_dim: int, text_len: int) -> ExternalTextEncoder:
    """Stand-in embeddings for untrained models (benchmarks, wiring): fixed random rows per word."""
    import zlib

    def fn(prompt: str) -> torch.Tensor:
        words = _WORD.findall(prompt.lower())[:text_len]
        rows = [torch.randn(text_dim, generator=torch.Generator().manual_seed(zlib.crc32(w.encode()))) for w in words]
        return torch.stack(rows) if rows else torch.zeros(0, text_dim)

    return ExternalTextEncoder(fn, text_dim, text_len, name="hashed random words")


_ENCODERS: dict[str, Callable[..., TextEncoder]] = {"toy": ToyTextEncoder}


def build_text_encoder(spec: dict) -> TextEncoder:
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind == "external":
        raise ValueError("this checkpoint's text embeddings come from outside (e.g. umT5 for Wan 2.1); load it "
                         "without its text encoder and pass one (Pipeline.with_text_encoder, or a CLIP in ComfyUI)")
    if kind not in _ENCODERS:
        raise ValueError(f"unknown text encoder kind {kind!r}; known kinds: {', '.join(sorted(_ENCODERS))}")
    return _ENCODERS[kind](**spec)
