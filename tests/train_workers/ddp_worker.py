"""Run under torchrun (2 CPU processes, gloo): trains a tiny Wan-shaped DiT with the buffered flow loss.

usage: torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT {ddp|fsdp} STEPS
Each rank writes OUT/rank<r>.pt with its final full weights (and EMA), rank 0 also the trainer's log.
"""
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamdit.network.config import ModelConfig  # noqa: E402
from streamdit.network.model import WanDiT  # noqa: E402
from streamdit.sampling.partition import Schedule  # noqa: E402
from streamdit.train import distributed  # noqa: E402
from streamdit.train.flow import PartitionMix, flow_matching_loss  # noqa: E402
from streamdit.train.trainer import TrainConfig, Trainer  # noqa: E402


def main(out: str, parallel: str, steps: int) -> None:
    torch.set_num_threads(1)
    distributed.init_from_env()
    cfg = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16,
                      text_len=4, freq_dim=16, patch_size=(1, 2, 2))
    torch.manual_seed(0)  # identical initial weights on every rank
    model = WanDiT(cfg)
    model.init_weights(0)
    mix = PartitionMix(stream_frames=4, chunk_sizes=(1, 2, 4), chunk_probs=(0.3, 0.4, 0.3))
    # a learnable toy distribution: per-sample constant frames, conditioned on a fixed text embedding
    base = torch.randn(8, 4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    ctx = torch.randn(8, 4, 16, generator=torch.Generator().manual_seed(2))

    def data(step, g):
        idx = torch.randint(8, (4,), generator=g)
        return {"latents": base[idx].expand(-1, -1, 4, -1, -1).clone(), "context": ctx[idx]}

    def loss_fn(m, batch, g):
        return flow_matching_loss(m, batch, mix, Schedule(1.0), g, text_dropout=0.0)

    trainer = Trainer(model, loss_fn, data, TrainConfig(out=out, steps=steps, lr=1e-2, warmup=5, ema=0.9,
                                                        checkpoint_every=steps, log_every=1), parallel=parallel)
    trainer.run()
    state = distributed.full_state_dict(trainer.model, trainer.module)
    if parallel == "fsdp":
        # full_state_dict gathers to rank 0 only; gather again for rank 1 to compare its shard's view
        state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in trainer.model.state_dict().items()}
    torch.save({"model": state, "ema": trainer.ema.state_dict()}, f"{out}/rank{distributed.rank()}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
