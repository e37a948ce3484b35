"""Latent <-> RGB codecs with streaming state: chunk in, frames out, state kept across chunks."""
from .autoencoder import AutoencoderCodec
from .base import Codec, StreamDecoder, StreamEncoder, build_codec, register_codec
from .patch import PatchCodec
from .taehv import TAEHVCodec, load_taehv
from .wan_vae import WanVAECodec, load_wan_vae

__all__ = ["AutoencoderCodec", "Codec", "StreamDecoder", "StreamEncoder", "PatchCodec", "TAEHVCodec", "WanVAECodec",
           "build_codec", "load_taehv", "load_wan_vae", "register_codec"]
