"""Test-only nodes loaded next to the pack by the host tests (never shipped to users)."""


class FakeCLIP:
    """Stands in for a ComfyUI CLIP (loading a real one needs a large weights file)."""

    def tokenize(self, text):
        raise RuntimeError("FakeCLIP cannot encode")


class StreamDiTTestFakeCLIP:
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def make(self):
        return (FakeCLIP(),)


NODE_CLASS_MAPPINGS = {"StreamDiTTestFakeCLIP": StreamDiTTestFakeCLIP}


class StandInUMT5:
    """A CLIP with ComfyUI's interface and umT5's output format, for the Wan path where no umT5 file exists.

    tokenize -> {"umt5xxl": [[(token, weight), ...]]}; encode_from_tokens -> cond [1, 512, dim] with the rows
    past the prompt's tokens zeroed (ComfyUI pads umT5 to 512 tokens), one fixed random row per word.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.encoded: list[str] = []

    def tokenize(self, text):
        import zlib
        return {"umt5xxl": [[(zlib.crc32(w.encode()) % 250000, 1.0) for w in text.split()]]}

    def encode_from_tokens(self, tokens, return_pooled=False):
        import torch
        ids = [t for t, _ in tokens["umt5xxl"][0]]
        self.encoded.append(" ".join(map(str, ids)))
        cond = torch.zeros(1, max(512, len(ids)), self.dim)
        for i, t in enumerate(ids):
            cond[0, i] = torch.randn(self.dim, generator=torch.Generator().manual_seed(t))
        return (cond, None) if return_pooled else cond


class StreamDiTTestStandInUMT5:
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"dim": ("INT", {"default": 32, "min": 1, "max": 4096})}}

    def make(self, dim):
        return (StandInUMT5(dim),)


NODE_CLASS_MAPPINGS["StreamDiTTestStandInUMT5"] = StreamDiTTestStandInUMT5
