"""API-format prompts built in code for the host tests (the bundled workflows live in workflows/)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"


def load_api(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def load_ui(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def stream_graph(*, schedule: str = "a pig walking right on grass", seconds: float = 1.0, stream_id: str = "test",
                 seed: int = 1, width: int = 64, height: int = 64, chunk_frames: int = 2, chunks: int = 8,
                 micro_steps: int = 1, ref_frames: int = 0, fps: float = 16.0, model: str = "streamdit-toy (embedded)",
                 reset: bool = False, preview: bool = True, save: str | None = None, images: str | None = None,
                 cfg: float = 1.0, negative: str = "", decoder: str = "model's own codec",
                 family: str | None = None) -> dict:
    """Loader -> settings -> schedule -> sampler -> [live preview] [save video (mp4/webm)] [frames -> SaveImage].
    family: the loader's optional family input (None: not set, as in workflows saved before it existed)."""
    g = {
        "1": {"class_type": "StreamDiTModelLoader",
              "inputs": {"model": model, "device": "auto", "dtype": "auto", "attention": "auto",
                         "decoder": decoder}},
        "2": {"class_type": "StreamDiTBufferSettings",
              "inputs": {"width": width, "height": height, "chunk_frames": chunk_frames, "chunks": chunks,
                         "micro_steps": micro_steps, "ref_frames": ref_frames, "seed": seed, "fps": fps, "shift": 0.0,
                         "cold_start": "uniform"}},
        "3": {"class_type": "StreamDiTPromptSchedule",
              "inputs": {"schedule": schedule, "transition_seconds": 0.5, "negative_prompt": negative, "cfg": cfg}},
        "4": {"class_type": "StreamDiTSampler",
              "inputs": {"model": ["1", 0], "settings": ["2", 0], "prompt": ["3", 0], "seconds": seconds,
                         "stream_id": stream_id, "reset": reset}},
    }
    if family is not None:
        g["1"]["inputs"]["family"] = family
    if preview:
        g["5"] = {"class_type": "StreamDiTLivePreview", "inputs": {"frames": ["4", 0]}}
    if save:
        g["6"] = {"class_type": "StreamDiTSaveVideo",
                  "inputs": {"frames": ["4", 0], "filename_prefix": f"tests/{stream_id}", "format": save, "crf": 0}}
    if images:
        g["7"] = {"class_type": "StreamDiTFramesToImage", "inputs": {"frames": ["4", 0]}}
        g["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": images}}
    return g


def with_inputs(graph: dict, node: str, **inputs) -> dict:
    g = copy.deepcopy(graph)
    g[node]["inputs"].update(inputs)
    return g


def nodes_of(graph: dict, class_type: str) -> list[str]:
    return [k for k, v in graph.items() if v["class_type"] == class_type]
