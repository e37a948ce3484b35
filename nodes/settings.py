"""StreamDiT Buffer Settings: frame size, the buffer partition (K, N, c, s), seed and clock."""
from __future__ import annotations

from dataclasses import astuple, dataclass

from ..streamdit.sampling.partition import Partition

SIZE_STEP = 16  # pixels per latent token of every preset: codec factor 8 x DiT patch 2 (toy and Wan 2.1)
MAX_BUFFER_FRAMES = 256  # latent frames; attention cost grows with the square of this
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class BufferSettings:
    """What flows on a STREAMDIT_SETTINGS link. All of it is part of a stream's identity."""

    width: int
    height: int
    chunk_frames: int  # c
    chunks: int  # N
    micro_steps: int  # s
    ref_frames: int  # K
    seed: int
    fps: float
    shift: float  # 0 = the model's default
    cold_start: str
    cold_steps: int = 0  # calls per band of the uniform start; 0 = the model's default

    @property
    def partition(self) -> Partition:
        return Partition(chunks=self.chunks, chunk_frames=self.chunk_frames, micro_steps=self.micro_steps,
                         ref_frames=self.ref_frames)

    def fingerprint(self) -> tuple:
        return astuple(self)

    def stream_kwargs(self) -> dict:
        """Keyword arguments for Pipeline.stream."""
        return {"seed": self.seed, "width": self.width, "height": self.height, "fps": self.fps,
                "buffer_frames": self.chunks * self.chunk_frames, "chunk_frames": self.chunk_frames,
                "micro_steps": self.micro_steps, "ref_frames": self.ref_frames,
                "shift": self.shift or None, "cold_start": self.cold_start,
                "cold_micro_steps": self.cold_steps or None}


def check_settings(width: int, height: int, chunk_frames: int, chunks: int, micro_steps: int,
                   ref_frames: int) -> str | None:
    """The first problem with these settings, as a message for the user, or None."""
    for name, value in (("width", width), ("height", height)):
        if value % SIZE_STEP:
            lo = max(SIZE_STEP, value // SIZE_STEP * SIZE_STEP)
            return (f"{name}={value} is not a multiple of {SIZE_STEP} (one latent token covers {SIZE_STEP}x{SIZE_STEP} "
                    f"pixels); use {lo} or {lo + SIZE_STEP}")
    try:
        partition = Partition(chunks=chunks, chunk_frames=chunk_frames, micro_steps=micro_steps,
                              ref_frames=ref_frames)
    except ValueError as exc:
        return str(exc)
    if partition.buffer_frames > MAX_BUFFER_FRAMES:
        fit = max(1, (MAX_BUFFER_FRAMES - ref_frames) // chunk_frames)
        return (f"the buffer would hold K + N*c = {ref_frames} + {chunks}*{chunk_frames} = {partition.buffer_frames} "
                f"latent frames, more than the {MAX_BUFFER_FRAMES} this pack allows (attention cost grows with the "
                f"square of the buffer); use chunks <= {fit} with chunk_frames={chunk_frames}, or fewer chunk_frames")
    return None


def check_size_for_model(settings: BufferSettings, spatial_factor: int, patch: tuple[int, int, int]) -> None:
    """Raise a clear error if the frame size does not fit this model's token grid."""
    for name, value, p in (("height", settings.height, patch[1]), ("width", settings.width, patch[2])):
        step = spatial_factor * p
        if value % step:
            lo = max(step, value // step * step)
            raise ValueError(f"{name}={value} does not fit this model: it needs a multiple of {step} pixels "
                             f"(codec factor {spatial_factor} x patch {p}); use {lo} or {lo + step}")


class StreamDiTBufferSettings:
    DESCRIPTION = ("How the stream is generated: frame size, and the moving buffer of N chunks of c frames, each "
                   "denoised by s micro steps per move, with K clean reference frames. Changing any of these (or "
                   "the seed) starts a new stream; keeping them continues the stream on the next queue.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = ("STREAMDIT_SETTINGS",)
    RETURN_NAMES = ("settings",)
    OUTPUT_TOOLTIPS = ("Buffer and size settings for a StreamDiT Stream Sampler.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": SIZE_STEP, "max": 4096, "step": SIZE_STEP}
        return {
            "required": {
                "width": ("INT", {"default": 64, **size, "tooltip": "Frame width in pixels (a multiple of 16; "
                                  "the embedded toy model was trained at 64)."}),
                "height": ("INT", {"default": 64, **size, "tooltip": "Frame height in pixels (a multiple of 16)."}),
                "chunk_frames": ("INT", {"default": 2, "min": 1, "max": 64, "tooltip": "c: latent frames per chunk. "
                                         "Each buffer move finishes one chunk, so this is how many frames arrive "
                                         "at a time."}),
                "chunks": ("INT", {"default": 8, "min": 1, "max": 256, "tooltip": "N: chunks in the buffer, at "
                                   "rising noise levels. More chunks = more denoising steps per frame (N*s) and "
                                   "more memory."}),
                "micro_steps": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "s: network calls per buffer "
                                        "move. Each frame gets N*s denoising steps in total."}),
                "ref_frames": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "K: finished frames kept in "
                                       "the buffer as clean context for the next ones."}),
                "seed": ("INT", {"default": 1, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                                 "tooltip": "Noise seed. Keep it fixed to continue the stream on every queue; a new "
                                            "seed starts a new stream."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": 120.0, "step": 1.0, "tooltip": "Playback "
                                  "frames per second; prompt schedule times are in seconds of this clock."}),
                "shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip": "Noise "
                                    "schedule shift (as in Wan). 0 = the model's own default."}),
                "cold_start": (["uniform", "noise"], {"default": "uniform", "tooltip": "How the first buffer is "
                               "made: 'uniform' denoises it once coherently (clean first frames, a short delay); "
                               "'noise' starts at once with rough first frames."}),
            },
            "optional": {
                "cold_steps": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "Network calls per band of "
                               "the uniform start (once, before the first frame). 0 = the model's default: the "
                               "toy model starts with 4, which halves its empty first frames, then streams with "
                               "micro_steps."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width, height, chunk_frames, chunks, micro_steps, ref_frames):
        values = (width, height, chunk_frames, chunks, micro_steps, ref_frames)
        if any(v is None for v in values):  # a linked input: checked when the sampler runs
            return True
        return check_settings(*values) or True

    def build(self, width, height, chunk_frames, chunks, micro_steps, ref_frames, seed, fps, shift, cold_start,
              cold_steps=0):
        problem = check_settings(width, height, chunk_frames, chunks, micro_steps, ref_frames)
        if problem:
            raise ValueError(problem)
        return (BufferSettings(int(width), int(height), int(chunk_frames), int(chunks), int(micro_steps),
                               int(ref_frames), int(seed), float(fps), float(shift), str(cold_start),
                               int(cold_steps or 0)),)
