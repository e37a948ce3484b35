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
