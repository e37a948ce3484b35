"""Latent <-> RGB codecs with streaming state: chunk in, frames out, state kept across chunks."""
from .base import Codec, StreamDecoder, StreamEncoder, build_codec, register_codec
from .patch import PatchCodec

__all__ = ["Codec", "StreamDecoder", "StreamEncoder", "PatchCodec", "build_codec", "register_codec"]
