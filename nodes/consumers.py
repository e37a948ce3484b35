"""The consumer nodes that take a run's chunks while it is being made: class name -> sink factory."""
from . import preview, save

SINKS = {"StreamDiTLivePreview": preview.open_sink, "StreamDiTSaveVideo": save.open_sink}
