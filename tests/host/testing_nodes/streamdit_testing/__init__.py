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


# -- memory and core-model probes (tests/host/test_core_model.py, test_memory.py) ------------------------------------
_watched: list = []  # weak references to the networks of models seen by StreamDiTTestWatch


def _loaded_patchers():
    import comfy.model_management as mm
    return [m.model for m in mm.current_loaded_models]


class CaptureSink:
    """Keeps a run's float frames (no 8-bit rounding) and whether its networks were loaded through core meanwhile."""

    def __init__(self, path):
        self.path, self.chunks, self.loaded = path, [], []

    def write(self, frames, index, run):
        loaded = _loaded_patchers()
        self.loaded.append(bool(run.entry.models) and all(any(p is q for q in loaded) for p in run.entry.models))
        self.chunks.append(frames.detach().float().cpu().clone())

    def close(self, ok, run):
        import torch
        if ok:
            import os
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            torch.save(torch.cat(self.chunks), self.path)
        return {"loaded_during_run": all(self.loaded), "chunks": len(self.chunks), "models": len(run.entry.models)}


class StreamDiTTestCaptureFrames:
    """A consumer that receives the run's chunks as float tensors through the run's own sink mechanism and saves them
    (torch.save) to <output>/<name>.pt; its UI output says whether the run's ModelPatchers were loaded meanwhile."""
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "capture"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("STREAMDIT_FRAMES",), "name": ("STRING", {"default": "capture"})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def capture(self, frames, name):
        import os

        import folder_paths
        path = os.path.join(folder_paths.get_output_directory(), f"{name}.pt")
        frames.sink_factories = {**frames.sink_factories, "StreamDiTTestCaptureFrames": lambda run, nid, inp:
                                 CaptureSink(path)}
        frames.pull()
        (result,) = [v for k, v in frames.results.items() if isinstance(v, dict) and "loaded_during_run" in v]
        return {"ui": {"capture": [result]}}


class StreamDiTTestWatch:
    """Keeps weak references to a STREAMDIT_MODEL's network and decoder; reports parameter dtypes."""
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "watch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("STREAMDIT_MODEL",)}}

    def watch(self, model):
        import weakref
        bundle = model.pipeline.bundle
        _watched.extend([weakref.ref(bundle.model), weakref.ref(bundle.codec)])
        dtypes = sorted({str(p.dtype) for p in bundle.model.parameters()})
        nbytes = sum(p.numel() * p.element_size() for p in bundle.model.parameters())
        return {"ui": {"watch": [{"dtypes": dtypes, "bytes": nbytes, "watched": len(_watched)}]}}


class StreamDiTTestMemory:
    """After a gc: how many watched modules are alive, which models core lists as loaded, and the parameter storage
    (bytes, each storage counted once) of every live bundle whose path ends with `path_suffix`."""
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "report"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path_suffix": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def report(self, path_suffix):
        import gc
        gc.collect()
        alive = sum(r() is not None for r in _watched)
        storages, models = {}, set()
        if path_suffix:
            for obj in gc.get_objects():
                if type(obj).__name__ == "Bundle" and str(getattr(obj, "path", "")).endswith(path_suffix):
                    models.add(id(obj.model))
                    for p in obj.model.parameters():
                        s = p.untyped_storage()
                        storages[s.data_ptr()] = s.nbytes()
        loaded = [type(getattr(p, "model", None)).__name__ for p in _loaded_patchers()]
        return {"ui": {"memory": [{"alive": alive, "watched": len(_watched), "loaded": loaded,
                                   "models": len(models), "storage_bytes": sum(storages.values())}]}}


class StreamDiTTestOOM:
    """Raises the out-of-memory error core handles (torch.cuda.OutOfMemoryError), as a GPU that ran out would."""
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "boom"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("STREAMDIT_FRAMES",)}}

    def boom(self, frames):
        import torch
        frames.pull()
        raise torch.cuda.OutOfMemoryError("test: CUDA out of memory (raised by StreamDiTTestOOM)")


class StreamDiTTestSetUnetFlag:
    """Sets core's --bf16-unet / --fp16-unet / --fp32-unet flag as if the server had been started with it ('': none)."""
    CATEGORY = "StreamDiT/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "set"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"flag": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def set(self, flag):
        from comfy.cli_args import args
        for name in ("bf16_unet", "fp16_unet", "fp32_unet"):
            setattr(args, name, name == flag)
        return {"ui": {"flag": [flag]}}


NODE_CLASS_MAPPINGS.update({c.__name__: c for c in (StreamDiTTestCaptureFrames, StreamDiTTestWatch,
                                                    StreamDiTTestMemory, StreamDiTTestOOM, StreamDiTTestSetUnetFlag)})
