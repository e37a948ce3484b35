"""Latent <-> RGB codecs with streaming state: chunk in, frames out, state kept across chunks."""
from .autoencoder import AutoencoderCodec
from .base import Codec, StreamDecoder, StreamEncoder, build_codec, register_codec
from .patch import PatchCodec

__all__ = ["AutoencoderCodec", "Codec", "StreamDecoder", "StreamEncoder", "PatchCodec", "build_codec", "register_codec"]
