"""ComfyUI nodes of the StreamDiT pack: thin adapters from widgets to the engine in ../streamdit."""
from . import host, registry
from .core_model import StreamDiTCoreModel
from .edit import StreamDiTVideoEdit
from .frames import StreamDiTFramesToImage
from .loader import StreamDiTModelLoader
from .preview import StreamDiTLivePreview
from .prompts import StreamDiTPromptSchedule
from .sampler import StreamDiTSampler
from .save import StreamDiTSaveVideo
from .settings import StreamDiTBufferSettings

NODE_CLASS_MAPPINGS = {
    "StreamDiTModelLoader": StreamDiTModelLoader,
    "StreamDiTCoreModel": StreamDiTCoreModel,
    "StreamDiTBufferSettings": StreamDiTBufferSettings,
    "StreamDiTPromptSchedule": StreamDiTPromptSchedule,
    "StreamDiTSampler": StreamDiTSampler,
    "StreamDiTLivePreview": StreamDiTLivePreview,
    "StreamDiTSaveVideo": StreamDiTSaveVideo,
    "StreamDiTFramesToImage": StreamDiTFramesToImage,
    "StreamDiTVideoEdit": StreamDiTVideoEdit,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "StreamDiTModelLoader": "StreamDiT Model Loader",
    "StreamDiTCoreModel": "StreamDiT Model from ComfyUI",
    "StreamDiTBufferSettings": "StreamDiT Buffer Settings",
    "StreamDiTPromptSchedule": "StreamDiT Prompt Schedule",
    "StreamDiTSampler": "StreamDiT Stream Sampler",
    "StreamDiTLivePreview": "StreamDiT Live Preview",
    "StreamDiTSaveVideo": "StreamDiT Save Video",
    "StreamDiTFramesToImage": "StreamDiT Frames to Image",
    "StreamDiTVideoEdit": "StreamDiT Video Edit",
}

host.register_model_folder()
registry.install_host_hooks()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
