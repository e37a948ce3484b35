"""StreamDiT: streaming video generation with a moving buffer of frames at rising noise levels.

Layers (each imports only what is below it or beside it; tests/test_layers.py keeps it so):
    pipeline.py, cli.py, demo.py  the front doors: load a model (io, wan), open streams (sampling), write files
    sampling/   partition -> buffer -> stream (edit.py: over a source); denoiser, causal KV cache, prompts, families
    io/, wan/   files: checkpoints, video, PNG, progress bars, plots; Wan 2.1 files in every published layout
    network/, codecs/   the Wan 2.1 DiT, its attention kernels and text encoders; latents <-> frames
    (train/, toyworld/, evaluation/: our toy model's training, data and judge; the layers above never import them)

Public API (plain PyTorch, no ComfyUI):
    Pipeline.load(path) -> pipeline; pipeline.stream(prompt, ...) -> Stream
    Stream.frames(n) yields [t, H, W, 3] frames; set_prompt / set_schedule / set_guidance; state_dict / load_state_dict
    Partition, Schedule, StreamBuffer: the band arithmetic; WanDiT: the network (Wan 2.1 names)
    save_checkpoint / load_checkpoint; parse_schedule; PRESETS / get_preset
"""
from .io.checkpoint import Bundle, load_checkpoint, save_checkpoint
from .network.config import PRESETS, ModelConfig, StreamDefaults, get_preset
from .pipeline import Pipeline, default_model_path
from .sampling.buffer import StreamBuffer
from .sampling.partition import Partition, Schedule
from .sampling.prompts import PromptTrack, parse_schedule
from .sampling.stream import Stream, StreamConfig

__all__ = ["Bundle", "ModelConfig", "PRESETS", "Partition", "Pipeline", "PromptTrack", "Schedule", "Stream",
           "StreamBuffer", "StreamConfig", "StreamDefaults", "WanDiT", "default_model_path", "get_preset",
           "load_checkpoint", "parse_schedule", "save_checkpoint"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "WanDiT":
        from .network.model import WanDiT
        return WanDiT
    raise AttributeError(name)
