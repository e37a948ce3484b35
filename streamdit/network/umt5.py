"""umT5-XXL, the text encoder of Wan 2.1, read from ComfyUI's text-encoder file (plain PyTorch).

The files ComfyUI loads with Load CLIP (type 'wan') from models/text_encoders:

* umt5_xxl_fp16.safetensors: every tensor fp16 (bf16 and fp32 files load the same way);
* umt5_xxl_fp8_e4m3fn_scaled.safetensors: the 168 linear weights in float8_e4m3fn, each with a float32
  `<linear>.scale_weight` (the weight is fp8 * scale), the marker tensor `scaled_fp8`, and the rest (the token
  table `shared.weight`, norms, position biases) in fp16.

Both use the Hugging Face T5 names (`shared.weight`, `encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight`,
`...layer.0.SelfAttention.relative_attention_bias.weight` in every block, `...layer.0.layer_norm.weight`,
`...layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight`, `...layer.1.layer_norm.weight`, `encoder.final_layer_norm.weight`)
and carry umT5's sentencepiece model as a uint8 tensor `spiece_model`.

The network is T5 v1.1 with umT5's one difference: every layer has its own relative position bias. It runs in
float32 (as ComfyUI runs it): RMS norms without mean subtraction, no 1/sqrt(d) in attention, gated tanh-GELU
feed-forward. Weights stay in the file's dtype unless `dtype` asks otherwise; fp8 weights stay fp8 and are
dequantized (fp8 * scale, in float32) layer by layer as they are used, which is what ComfyUI does.

Prompts are tokenized as Wan's own T5EncoderModel does (clean='whitespace', at most 512 tokens with the end
token last), and, as Wan and ComfyUI pad, rows after the prompt's tokens are zero.
"""
from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .text import ExternalTextEncoder

WAN_TEXT_LEN = 512  # tokens Wan 2.1 reads (prompt, end token, zero rows)
TOKENIZER_KEY = "spiece_model"  # ComfyUI's key for the sentencepiece model inside the file
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_SUFFIX = ".scale_weight"
ANCHOR = "encoder.block.0.layer.0.SelfAttention.q.weight"
COMFY_FILES = ("umt5_xxl_fp16.safetensors or umt5_xxl_fp8_e4m3fn_scaled.safetensors (ComfyUI's models/"
               "text_encoders; from Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/text_encoders)")
_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
_LINEARS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")


@dataclass(frozen=True)
class UMT5Config:
    """Sizes of a umT5 encoder; umT5-XXL is the default. Everything but max_distance is read from the file."""

    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64
    num_heads: int = 64
    num_layers: int = 24
    d_ff: int = 10240
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6


def relative_position_buckets(length: int, num_buckets: int = 32, max_distance: int = 128,
                              device: torch.device | str | None = None) -> Tensor:
    """[length, length] bucket of (key position - query position), bidirectional as in T5's encoder.

    Half the buckets are for keys before or at the query, half for keys after it; in each half, distances
    below a quarter of num_buckets get a bucket each, larger ones share log-spaced buckets up to max_distance.
    """
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    exact = half // 2
    dist = rel.abs()
    # the log is only used where dist >= exact; clamp keeps log(0) out of the other entries
    far = exact + (torch.log(dist.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                   * (half - exact)).to(torch.long)
    far = far.clamp(max=half - 1)
    return (rel > 0).long() * half + torch.where(dist < exact, dist, far)


class _Linear(nn.Module):
    """y = x W^T with W held as stored (fp16/bf16/fp32, or fp8 with its scale) and used in x's dtype."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.register_buffer("weight", torch.empty(d_out, d_in, device="meta"))
        self.register_buffer("scale", None)  # fp8 files: W = weight * scale (per tensor or per output row)

    def dequantized(self, dtype: torch.dtype) -> Tensor:
        w = self.weight.to(dtype)
        if self.scale is not None:
            s = self.scale.to(dtype)
            w = w * (s.view(-1, 1) if s.numel() > 1 else s)
        return w

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dequantized(x.dtype))


class _RMSNorm(nn.Module):
    """T5's layer norm: x / rms(x) * weight, no mean subtraction, no bias; in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.empty(dim, device="meta"))

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()


class _Block(nn.Module):
    """Self-attention with this layer's own relative position bias, then the gated-GELU feed-forward."""

    def __init__(self, c: UMT5Config):
        super().__init__()
        inner = c.num_heads * c.d_kv
        self.heads, self.d_kv = c.num_heads, c.d_kv
        self.attn_norm = _RMSNorm(c.d_model, c.eps)
        self.q, self.k, self.v = (_Linear(c.d_model, inner) for _ in range(3))
        self.o = _Linear(inner, c.d_model)
        self.register_buffer("position_bias", torch.empty(c.num_buckets, c.num_heads, device="meta"))
        self.ffn_norm = _RMSNorm(c.d_model, c.eps)
        self.wi_0, self.wi_1 = _Linear(c.d_model, c.d_ff), _Linear(c.d_model, c.d_ff)
        self.wo = _Linear(c.d_ff, c.d_model)

    def forward(self, x: Tensor, buckets: Tensor, key_mask: Tensor) -> Tensor:
        b, n, _ = x.shape
        h = self.attn_norm(x)
        q, k, v = (proj(h).view(b, n, self.heads, self.d_kv).transpose(1, 2) for proj in (self.q, self.k, self.v))
        bias = self.position_bias.float()[buckets].permute(2, 0, 1).unsqueeze(0) + key_mask  # [B, H, n, n]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # T5: no 1/sqrt(d_kv)
        x = x + self.o(a.transpose(1, 2).reshape(b, n, -1))
        h = self.ffn_norm(x)
        return x + self.wo(F.gelu(self.wi_0(h), approximate="tanh") * self.wi_1(h))


class UMT5Encoder(nn.Module):
    """The umT5 encoder stack: token ids [B, n] and mask [B, n] -> float32 hidden states [B, n, d_model].

    Rows where mask is False are zero and take no part in attention (they are padding).
    """

    def __init__(self, config: UMT5Config):
        super().__init__()
        self.config = config
        self.register_buffer("embed", torch.empty(config.vocab_size, config.d_model, device="meta"))
        self.register_buffer("embed_scale", None)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.final_norm = _RMSNorm(config.d_model, config.eps)

    @property
    def device(self) -> torch.device:
        return self.embed.device

    @torch.no_grad()
    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        ids, mask = ids.to(self.device), mask.to(self.device, torch.bool)
        if self.embed.dtype in _FP8:  # gather the bytes (index ops on fp8 are not everywhere), then widen
            x = self.embed.view(torch.uint8)[ids].view(self.embed.dtype).float()
        else:
            x = F.embedding(ids, self.embed).float()
        if self.embed_scale is not None:
            x = x * self.embed_scale.float()
        c = self.config
        buckets = relative_position_buckets(ids.shape[1], c.num_buckets, c.max_distance, self.device)
        key_mask = torch.zeros(mask.shape, device=self.device).masked_fill(~mask, float("-inf"))[:, None, None, :]
        for block in self.blocks:
            x = block(x, buckets, key_mask)
        return self.final_norm(x) * mask.unsqueeze(-1)


def _wan_clean(text: str) -> str:
    """Wan's clean='whitespace' (html entities twice, runs of whitespace to one space, stripped).

    Wan also runs ftfy.fix_text first (mojibake and unicode repairs); that is left out: it is not a dependency
    here, and sentencepiece's own NFKC normalisation already folds most of what it changes in ordinary prompts.
    """
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text)).strip()).strip()


class UMT5Tokenizer:
    """umT5's sentencepiece model: prompt -> token ids, the end token last, at most text_len ids in all."""

    def __init__(self, model_proto: bytes, text_len: int = WAN_TEXT_LEN, clean: bool = True, source: str = ""):
        spm = _import_sentencepiece()
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=bytes(model_proto))
        except Exception as exc:
            raise ValueError(f"the tokenizer in {source or 'the file'} is not a readable sentencepiece model "
                             f"({exc}); use {COMFY_FILES}") from exc
        if text_len < 1:
            raise ValueError(f"text_len must be at least 1 (the end token), not {text_len}")
        self.text_len, self.clean = int(text_len), clean
        eos = self.sp.eos_id()
        self.eos = eos if eos >= 0 else 1  # umT5: pad 0, end 1, unk 2
        self.vocab_size = self.sp.get_piece_size()

    def __call__(self, prompt: str) -> list[int]:
        text = _wan_clean(prompt) if self.clean else prompt
        return list(self.sp.encode(text))[: self.text_len - 1] + [self.eos]


class UMT5TextEncoder(ExternalTextEncoder):
    """Prompts -> umT5 embeddings [B, text_len, d_model]: the prompt's tokens (end token included), then zeros.

    Like the other external encoders (ComfyUI's CLIP), its weights are not part of this module's state, so a
    checkpoint saved with it stores only {"kind": "external"}. Embeddings come back in float32 on the
    encoder's device.
    """

    def __init__(self, network: UMT5Encoder, tokenizer: UMT5Tokenizer, name: str = "umT5"):
        super().__init__(self._encode_one, network.config.d_model, tokenizer.text_len, name)
        # held in __dict__, not registered: nn.Module would otherwise save 5.7B parameters with a checkpoint
        self.__dict__["network"], self.__dict__["tokenizer"] = network, tokenizer

    def _encode_one(self, prompt: str) -> Tensor:
        return self.encode([prompt])[0, : len(self.tokenizer(prompt))]

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        dev = self.network.device
        out = torch.zeros(len(prompts), self.text_len, self.text_dim, device=dev)
        if not prompts:
            return out
        tokens = [self.tokenizer(p) for p in prompts]
        n = max(map(len, tokens))
        ids = torch.zeros(len(prompts), n, dtype=torch.long)  # pad id 0; padding is masked and zeroed anyway
        mask = torch.zeros(len(prompts), n, dtype=torch.bool)
        for i, t in enumerate(tokens):
            ids[i, : len(t)] = torch.tensor(t)
            mask[i, : len(t)] = True
        # only the longest prompt's length is computed: padded keys are masked, so rows 0..len-1 are the same
        # as with Wan's 512-token input
        out[:, :n] = self.network(ids, mask)
        return out


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError as exc:
        raise ImportError("the umT5 tokenizer needs the sentencepiece package: pip install sentencepiece") from exc
    return sentencepiece


def _describe(keys: list[str]) -> str:
    """What a file that is not a umT5 encoder looks like, for the error message."""
    ks = set(keys)

    def has(part: str) -> bool:
        return any(part in k for k in ks)

    if has("DenseReluDense.wi.weight"):
        return "an original T5 (v1.0) encoder, whose feed-forward is not gated"
    if has("encoder.block.") and has("SelfAttention"):
        return "a T5 encoder"
    if has("text_model.encoder.layers.") or has("transformer.resblocks."):
        return "a CLIP text encoder"
    if has("model.layers.") and has("self_attn"):
        return "a decoder-only language model (Llama/Qwen/Gemma text encoder)"
    if has("token_embedding.weight") and has("blocks.0.attn.q.weight"):
        return "Wan's own umT5 checkpoint layout (models_t5_umt5-xxl-enc-bf16.pth), which carries no tokenizer"
    if has("patch_embedding.") or has("blocks.0.self_attn.q.weight") or has("diffusion_model."):
        return "a Wan diffusion model (DiT), not a text encoder"
    if has("decoder.conv_in") or has("encoder.conv1") or has("decoder.head"):
        return "a VAE"
    if ks == {TOKENIZER_KEY}:
        return "only a tokenizer"
    sample = ", ".join(sorted(ks)[:4])
    return f"something else ({len(ks)} tensors, e.g. {sample})" if ks else "an empty file"


def _open(path: str):
    from safetensors import safe_open

    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise FileNotFoundError(f"umT5 text encoder file {path} does not exist{where}; use {COMFY_FILES}")
    try:
        return safe_open(path, framework="pt", device="cpu")
    except Exception as exc:
        if path.endswith((".pt", ".pth", ".bin", ".ckpt", ".gguf")):
            raise ValueError(f"{path} is not a .safetensors file; the umT5 loader reads {COMFY_FILES}") from None
        size = os.path.getsize(path)
        raise ValueError(f"{path} ({size} bytes) is not a readable safetensors file: it may be incomplete or corrupt "
                         f"({exc}); the umT5 loader reads {COMFY_FILES}") from exc


def _config_from(f, keys: list[str], prefix: str, path: str) -> UMT5Config:
    def shape(name: str) -> tuple[int, ...]:
        return tuple(f.get_slice(prefix + name).get_shape())

    blocks = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"encoder\.block\.(\d+)\.", k))}
    num_layers = max(blocks) + 1
    needed = ["shared.weight", "encoder.final_layer_norm.weight"]
    for i in range(num_layers):
        a, ff = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
        needed += [a + "layer_norm.weight", ff + "layer_norm.weight",
                   a + "SelfAttention.relative_attention_bias.weight"]
        needed += [a + f"SelfAttention.{n}.weight" for n in "qkvo"]
        needed += [ff + f"DenseReluDense.{n}.weight" for n in ("wi_0", "wi_1", "wo")]
    have = set(keys)
    if prefix + "shared.weight" not in have and prefix + "encoder.embed_tokens.weight" in have:
        needed[0] = "encoder.embed_tokens.weight"  # transformers' UMT5EncoderModel state dict, tied copy only
    missing = [n for n in needed if prefix + n not in have]
    if missing:
        if all(n.endswith("relative_attention_bias.weight") for n in missing) and \
                prefix + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" in have:
            raise ValueError(f"{path} is a T5 encoder, not umT5: only its first layer has a relative position "
                             "bias (e.g. t5xxl for Flux/SD3). Wan 2.1 needs umT5-XXL: " + COMFY_FILES)
        what = _describe([k[len(prefix):] for k in keys if k.startswith(prefix)])
        raise ValueError(f"{path} is not a umT5 encoder: it looks like {what}; {len(missing)} tensor(s) are missing "
                         f"(e.g. {', '.join(missing[:3])}). Use {COMFY_FILES}")
    vocab, d_model = shape(needed[0])
    inner = shape("encoder.block.0.layer.0.SelfAttention.q.weight")[0]
    buckets, heads = shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    d_ff = shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")[0]
    if inner % heads:
        raise ValueError(f"{path}: attention width {inner} is not a multiple of the {heads} heads of its position bias")
    return UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=inner // heads, num_heads=heads, num_layers=num_layers,
                      d_ff=d_ff, num_buckets=buckets)


def _find_prefix(keys: list[str], path: str) -> str:
    hits = [k[: -len(ANCHOR)] for k in keys if k.endswith(ANCHOR)]
    if not hits:
        raise ValueError(f"{path} is not a umT5 encoder: it looks like {_describe(keys)}. Use {COMFY_FILES}")
    if len(hits) > 1:
        raise ValueError(f"{path} holds {len(hits)} T5-like encoders (under {', '.join(repr(h) for h in hits)}); "
                         "save the umT5 text encoder alone")
    return hits[0]


def _tokenizer_bytes(f, keys: list[str], prefix: str, path: str, tokenizer: str | None) -> tuple[bytes, str]:
    if tokenizer is not None:
        if not os.path.isfile(tokenizer):
            raise FileNotFoundError(f"tokenizer file {tokenizer} does not exist (a sentencepiece .model, e.g. "
                                    "spiece.model of google/umt5-xxl)")
        with open(tokenizer, "rb") as fh:
            return fh.read(), tokenizer
    # ComfyUI keeps it beside the encoder's tensors ('spiece_model'); in a full checkpoint one level up
    candidates = [prefix + TOKENIZER_KEY] + sorted(k for k in keys if k.endswith(TOKENIZER_KEY))
    for key in candidates:
        if key in keys:
            t = f.get_tensor(key)
            if t.dtype != torch.uint8 or t.ndim != 1:
                raise ValueError(f"{path}: {key!r} should be the tokenizer's bytes (uint8 [n]), not "
                                 f"{t.dtype} {tuple(t.shape)}")
            return t.numpy().tobytes(), f"{path} ({key})"
    raise ValueError(f"{path} has umT5 weights but no tokenizer inside (no {TOKENIZER_KEY!r} tensor, which ComfyUI's "
                     f"repackaged files carry). Use {COMFY_FILES}, or pass tokenizer= a sentencepiece .model file "
                     "(spiece.model of google/umt5-xxl)")


def _check_dtype(dtype: torch.dtype | None) -> None:
    if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype {dtype} is not supported for umT5 weights; use None (as stored), torch.float32, "
                         "torch.bfloat16 or torch.float16")


def load_umt5_encoder(path: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None, *,
                      tokenizer: str | None = None,
                      text_len: int = WAN_TEXT_LEN) -> tuple[UMT5Encoder, UMT5Tokenizer]:
    """The umT5 network and its tokenizer from a ComfyUI umT5 file (see the module docstring).

    dtype None keeps the weights as stored (fp8 ones stay fp8 and are dequantized per layer in use);
    float32/bfloat16/float16 converts them at load (fp8 dequantized as fp8 * scale, then rounded to dtype).
    The small tensors (norms, position biases) are always float32; the computation is always float32.
    """
    _check_dtype(dtype)
    device = torch.device(device)
    with _open(path) as f:
        keys = list(f.keys())
        prefix = _find_prefix(keys, path)
        config = _config_from(f, keys, prefix, path)
        proto, source = _tokenizer_bytes(f, keys, prefix, path, tokenizer)
        tok = UMT5Tokenizer(proto, text_len, source=source)
        if tok.vocab_size > config.vocab_size:
            raise ValueError(f"the tokenizer ({source}) has {tok.vocab_size} pieces, more than the "
                             f"{config.vocab_size} rows of the encoder's token table: they do not belong together")
        net = UMT5Encoder(config)
        have = set(keys)

        def read(name: str, small: bool = False) -> tuple[Tensor, Tensor | None]:
            """(weight, scale or None) on the device: small tensors float32; big ones as `dtype` says."""
            t = f.get_tensor(prefix + name)
            scale_key = prefix + name[: -len(".weight")] + SCALE_SUFFIX
            scale = f.get_tensor(scale_key).float() if scale_key in have else None
            if not t.is_floating_point():
                raise ValueError(f"{path}: {prefix + name} is {t.dtype}, not a floating-point weight")
            if small or dtype is not None or (scale is None and t.dtype not in _FP8):
                if scale is not None or t.dtype in _FP8:  # dequantize now (fp8 -> float32 exactly, then * scale)
                    t = t.to(device).float()
                    if scale is not None:
                        s = scale.to(device)
                        t = t * (s.view(-1, *[1] * (t.ndim - 1)) if s.numel() > 1 else s)
                    scale = None
                target = torch.float32 if small else (dtype or t.dtype)
                return t.to(device=device, dtype=target), None
            # fp8 kept as stored (1 byte a weight) with its scale, dequantized in use
            return t.to(device), (scale.to(device) if scale is not None else None)

        emb_name = "shared.weight" if prefix + "shared.weight" in have else "encoder.embed_tokens.weight"
        net.embed, net.embed_scale = read(emb_name)
        net.final_norm.weight = read("encoder.final_layer_norm.weight", small=True)[0]
        for i, block in enumerate(net.blocks):
            a, ff = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
            block.attn_norm.weight = read(a + "layer_norm.weight", small=True)[0]
            block.ffn_norm.weight = read(ff + "layer_norm.weight", small=True)[0]
            block.position_bias = read(a + "SelfAttention.relative_attention_bias.weight", small=True)[0]
            for n in _LINEARS:
                attn = n in ("q", "k", "v", "o")
                full = a + f"SelfAttention.{n}.weight" if attn else ff + f"DenseReluDense.{n}.weight"
                lin = getattr(block, n)
                lin.weight, lin.scale = read(full)
    left = [n for n, b in net.named_buffers() if b.is_meta]
    if left:
        raise RuntimeError(f"internal error: umT5 tensors {left[:5]} were not loaded from {path}")
    return net.eval(), tok


def load_umt5_text_encoder(path: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                           *, tokenizer: str | None = None, text_len: int = WAN_TEXT_LEN) -> UMT5TextEncoder:
    """A TextEncoder over ComfyUI's umT5 file: encode(prompts) -> [B, 512, 4096] float32 for umT5-XXL.

    Rows are the prompt's tokens (end token included, at most text_len) then zeros, as Wan 2.1 reads them.
    dtype: see load_umt5_encoder (None keeps the file's; fp8 files then take about 6.7 GB, fp16 ones 11.4 GB).
    tokenizer: a sentencepiece .model file, for umT5 files that carry none.
    """
    net, tok = load_umt5_encoder(path, device, dtype, tokenizer=tokenizer, text_len=text_len)
    return UMT5TextEncoder(net, tok, name=f"umT5 {os.path.basename(path)}")
