"""The toy model's recipe as a package, one module per job: recipe (settings, STAGES), clips (what it trains on),
cache (latent caches), stages (the resumable stages, run), probes, export. Names load on first use, so the
command line can read STAGES without importing the toy world."""
import importlib

_WHERE = {"STAGES": "recipe", "ToyRecipe": "recipe", "record_stage": "recipe",
          "merge_caches": "cache", "stage_cache": "cache",
          "appear_specs": "clips", "caption": "clips", "frame_source": "clips", "random_specs": "clips",
          "render_specs": "clips", "defaults_for": "export", "export": "export", "probe_adherence": "probes",
          "build_teacher": "stages", "check_stages": "stages", "final_module": "stages", "run": "stages",
          "stage_autoencoder": "stages", "stage_student": "stages", "stage_teacher": "stages",
          "stage_teacher_tune": "stages"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
