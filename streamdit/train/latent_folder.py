"""The fine-tuning dataset: precomputed latents and text embeddings in a folder (docs/wan.md shows the layout).

    DATA/
      clips/<name>.safetensors   latents [C, F, h, w] (DiT space: normalised Wan 2.1 VAE latents, as
                                 WanVAECodec.encode returns them) and context [L, text_dim] (umT5 output cut to
                                 the prompt's tokens); optional metadata {"caption": ...}
      null_context.safetensors   optional: context of the empty prompt (the unconditional branch of guidance
                                 and of text dropout; zeros without it)

Clips of different sizes train in buckets of one size per batch; each sample is a random crop of `frames`
consecutive latent frames. Tensors are read lazily, crop by crop, so the folder may be far larger than memory.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def write_clip(root: str | os.PathLike, name: str, latents: torch.Tensor, context: torch.Tensor,
               caption: str = "") -> Path:
    """Add one clip to a dataset folder (latents [C, F, h, w], context [L, text_dim]); returns its path."""
    if latents.ndim != 4 or context.ndim != 2:
        raise ValueError(f"latents must be [C, F, h, w] and context [L, text_dim]; got {tuple(latents.shape)} and "
                         f"{tuple(context.shape)}")
    path = Path(root) / "clips" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": latents.detach().cpu().contiguous(), "context": context.detach().cpu().contiguous()},
              str(path), metadata={"caption": caption})
    return path


def write_null_context(root: str | os.PathLike, context: torch.Tensor) -> Path:
    path = Path(root) / "null_context.safetensors"
    save_file({"context": context.detach().cpu().contiguous()}, str(path))
    return path


class LatentFolder:
    """data(step, generator) -> {"latents": [B, C, frames, h, w], "context": [B, text_len, text_dim],
    "null_context": [text_len, text_dim]} for the Trainer."""

    def __init__(self, root: str | os.PathLike, batch: int, frames: int, text_len: int, text_dim: int,
                 latent_channels: int | None = None):
        self.root, self.batch, self.frames = Path(root), int(batch), int(frames)
        self.text_len, self.text_dim = int(text_len), int(text_dim)
        files = sorted((self.root / "clips").glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no clips in {self.root / 'clips'}: the dataset folder needs "
                                    "clips/<name>.safetensors files with 'latents' and 'context' (see docs/wan.md)")
        self.buckets: dict[tuple, list[tuple[Path, int]]] = defaultdict(list)
        short = []
        for path in files:
            shape, ctx = self._shapes(path)
            if latent_channels is not None and shape[0] != latent_channels:
                raise ValueError(f"{path}: latents have {shape[0]} channels, the model takes {latent_channels}")
            if ctx[1] != self.text_dim:
                raise ValueError(f"{path}: context is {list(ctx)}, the model reads text_dim {self.text_dim} "
                                 "(umT5-XXL for Wan 2.1 gives 4096)")
            if shape[1] < self.frames:
                short.append(f"{path.name} ({shape[1]})")
                continue
            self.buckets[(shape[0], shape[2], shape[3])].append((path, shape[1]))
        if not self.buckets:
            raise ValueError(f"every clip in {self.root} is shorter than the {self.frames} latent frames a training "
                             f"buffer needs: {', '.join(short[:5])}")
        self.skipped = short
        self.null = self._null()

    @staticmethod
    def _shapes(path: Path) -> tuple[list[int], list[int]]:
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                if not {"latents", "context"} <= keys:
                    raise ValueError(f"{path} holds {sorted(keys)}; a clip needs 'latents' and 'context'")
                latents, ctx = f.get_slice("latents").get_shape(), f.get_slice("context").get_shape()
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"{path} is not a readable safetensors clip ({type(exc).__name__}: {exc}); write it "
                             "again") from exc
        if len(latents) != 4 or len(ctx) != 2:
            raise ValueError(f"{path}: latents {latents} / context {ctx}; expected [C, F, h, w] and [L, text_dim]")
        return list(latents), list(ctx)

    def _null(self) -> torch.Tensor:
        path = self.root / "null_context.safetensors"
        out = torch.zeros(self.text_len, self.text_dim)
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                ctx = f.get_tensor("context").float()
            out[:min(len(ctx), self.text_len)] = ctx[:self.text_len]
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.buckets.values())

    def __call__(self, step: int, generator: torch.Generator) -> dict:
        keys = sorted(self.buckets)
        sizes = torch.tensor([len(self.buckets[k]) for k in keys], dtype=torch.float64)
        bucket = self.buckets[keys[int(torch.multinomial(sizes, 1, generator=generator))]]
        picks = torch.randint(len(bucket), (self.batch,), generator=generator).tolist()
        latents, contexts = [], []
        for i in picks:
            path, length = bucket[i]
            start = int(torch.randint(length - self.frames + 1, (1,), generator=generator))
            with safe_open(str(path), framework="pt") as f:
                latents.append(f.get_slice("latents")[:, start:start + self.frames].float())
                ctx = f.get_tensor("context").float()[:self.text_len]
            padded = torch.zeros(self.text_len, self.text_dim)
            padded[:len(ctx)] = ctx  # zero rows after the prompt's tokens, as Wan pads umT5 output
            contexts.append(padded)
        return {"latents": torch.stack(latents), "context": torch.stack(contexts), "null_context": self.null}
