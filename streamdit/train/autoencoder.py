"""Train the toy model's autoencoder codec on rendered frames, then measure its latent statistics."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..codecs.autoencoder import AutoencoderCodec
from ..progress import Progress

FrameSource = Callable[[int, torch.Generator], torch.Tensor]  # (count, generator) -> frames [n, H, W, 3]


def train_autoencoder(codec: AutoencoderCodec, frames: FrameSource, steps: int, batch: int = 32, lr: float = 1e-3,
                      seed: int = 0, latent_noise: float = 0.1, log: Callable[[int, float], None] | None = None
                      ) -> list[float]:
    """MSE + L1 reconstruction. Half of each batch decodes slightly noised latents, so that the decoder
    forgives the small latent errors a diffusion model makes. Returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    codec.train()
    with Progress(steps, desc="autoencoder", unit="step") as bar:
        for step in range(steps):
            x = frames(batch, g)
            z = codec.encode_raw(x)
            noise = torch.randn(z.shape, generator=g) * latent_noise * z.detach().std()
            z = torch.cat([z[: batch // 2], z[batch // 2:] + noise[batch // 2:]])
            rec = codec.decode_raw(z)
            target = x.permute(0, 3, 1, 2)
            loss = (rec - target).pow(2).mean() + 0.1 * (rec - target).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if log is not None:
                log(step, loss.item())
    codec.eval()
    return losses


@torch.no_grad()
def measure_latent_stats(codec: AutoencoderCodec, frames: FrameSource, count: int = 1024, seed: int = 1) -> None:
    """Set the per-channel mean and std used to normalise latents (like Wan's VAE constants)."""
    z = torch.cat([codec.encode_raw(frames(64, torch.Generator().manual_seed(seed + i))) for i in range(count // 64)])
    codec.latent_mean.copy_(z.mean(dim=(0, 2, 3)))
    codec.latent_std.copy_(z.std(dim=(0, 2, 3)).clamp_min(1e-4))


@torch.no_grad()
def reconstruction_psnr(codec: AutoencoderCodec, frames: torch.Tensor) -> float:
    rec = codec.to_frames(codec.to_latent(frames))
    mse = (rec - frames).pow(2).mean().clamp_min(1e-12)
    return float(10 * torch.log10(1.0 / mse))
