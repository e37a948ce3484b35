"""Train the toy model's autoencoder codec on rendered frames, then measure its latent statistics."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..codecs.autoencoder import AutoencoderCodec
from ..io.progress import Progress

# (count, generator) -> frames [n, H, W, 3] and the sprite masks [n, H, W] (bool) of those frames
FrameSource = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def reconstruction_loss(rec: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor,
                        sprite_weight: float) -> torch.Tensor:
    """MSE + 0.1 L1 of decoded frames [n, 3, H, W] against frames [n, H, W, 3], sprite pixels (masks [n, H, W],
    dilated by one) weighted 1 + sprite_weight."""
    weight = 1 + sprite_weight * F.max_pool2d(masks[:, None].float(), 3, 1, 1)
    err = rec - frames.permute(0, 3, 1, 2)
    return (weight * (err.pow(2) + 0.1 * err.abs())).mean()


def optimizer_step(opt: torch.optim.Optimizer, sched, params, loss: torch.Tensor) -> float:
    """One clipped (norm 1) optimiser and schedule step; returns the loss."""
    params = list(params)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    return loss.item()


def train_autoencoder(codec: AutoencoderCodec, frames: FrameSource, steps: int, batch: int = 32, lr: float = 1e-3,
                      seed: int = 0, latent_noise: float = 0.1, sprite_weight: float = 20.0,
                      log: Callable[[int, float], None] | None = None) -> list[float]:
    """MSE + L1 reconstruction, with sprite pixels (dilated by one) weighted 1 + sprite_weight: sprites
    cover about 2% of a frame and a plain loss blurs them away. Half of each batch decodes slightly
    noised latents, so the decoder forgives a diffusion model's small latent errors. Returns losses."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    codec.train()
    with Progress(steps, desc="autoencoder", unit="step") as bar:
        for step in range(steps):
            x, mask = frames(batch, g)
            z = codec.encode_raw(x)
            noise = torch.randn(z.shape, generator=g) * latent_noise * z.detach().std()
            z = torch.cat([z[: batch // 2], z[batch // 2:] + noise[batch // 2:]])
            loss = reconstruction_loss(codec.decode_raw(z), x, mask, sprite_weight)
            losses.append(optimizer_step(opt, sched, codec.parameters(), loss))
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
    z = torch.cat([codec.encode_raw(frames(64, torch.Generator().manual_seed(seed + i))[0])
                   for i in range(count // 64)])
    codec.latent_mean.copy_(z.mean(dim=(0, 2, 3)))
    codec.latent_std.copy_(z.std(dim=(0, 2, 3)).clamp_min(1e-4))


@torch.no_grad()
def reconstruction_psnr(codec: AutoencoderCodec, frames: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) over all pixels, over the sprites and over the background."""
    err = (codec.to_frames(codec.to_latent(frames)) - frames).pow(2).mean(-1)

    def psnr(e):
        return float(10 * torch.log10(1.0 / e.mean().clamp_min(1e-12)))

    return {"all": psnr(err), "sprite": psnr(err[masks]), "background": psnr(err[~masks])}
