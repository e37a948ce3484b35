"""The toy recipe's first stages at toy scale: an autoencoder whose loss falls, a latent cache, crops."""
import random

import torch

from streamdit.codecs import AutoencoderCodec
from streamdit.train.autoencoder import train_autoencoder
from streamdit.train.recipe import ToyRecipe, frame_source, run
from streamdit.train.toydata import LatentClips


def test_autoencoder_loss_falls():
    recipe = ToyRecipe(size=32)
    codec = AutoencoderCodec(4, (8, 16))
    losses = train_autoencoder(codec, frame_source(recipe), steps=80, batch=8, lr=3e-3)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_quick_stages_write_codec_cache_and_crops(tmp_path):
    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    run(recipe, stages=("autoencoder", "cache"))
    assert (tmp_path / "run" / "autoencoder.safetensors").is_file()
    cache = torch.load(str(tmp_path / "run" / "cache.pt"), weights_only=True)
    assert cache["latents"].shape == (8, 8, 24, 16, 16) and cache["latents"].dtype == torch.float16
    data = LatentClips(cache, batch_size=3, frames=16, caption=lambda scene, rng: " ".join(map(str, scene)))
    a, b = data(0, torch.Generator().manual_seed(1)), data(0, torch.Generator().manual_seed(1))
    assert a["latents"].shape == (3, 8, 16, 16, 16) and torch.equal(a["latents"], b["latents"])
    assert a["context"] == b["context"] and len(a["context"]) == 3
    # a crop is captioned with the scene its newest frame shows
    spec = data.specs[0]
    words = random.Random(0)
    assert data.caption(spec.before, words) != "" and spec.switch >= 1
