"""The toy world: endless procedural sprite videos with captions, and a classic judge of such videos.

Rendering (frames are torch.float32 [..., H, W, 3] in [0, 1], 16 FPS, 64x64 by default, any size >= 32):
    render_clip(scene, num_frames, seed, size=64, *, switch_to=None, switch_at=None) -> (frames, ClipTruth)
    render_batch(scenes, num_frames, seeds, size=64, *, switch_to=None, switch_at=None, truth=False)
        -> RenderedBatch(frames [B, T, H, W, 3], captions per frame, truth)
    ToyStream(scene, seed, size): read(n), next(stream), frames(n), set_scene(scene): endless, constant memory
Captions: canonical_caption(scene), random_caption(scene, rng), parse_caption(text), VOCABULARY
Judging: judge_clip(frames) -> ClipVerdict; judge_frames; classify_motion; mask_iou; centroid_distance
Seeds: training uses TRAIN_SEED_RANGE, evaluation held-out seeds eval_seed(i) = EVAL_SEED_OFFSET + i.
"""
from .captions import MAX_CAPTION_WORDS, VOCABULARY, canonical_caption, parse_caption, random_caption
from .degrade import DEGRADATIONS, degrade
from .judge import ClipVerdict, FrameVerdicts, classify_motion, judge_clip, judge_frames
from .metrics import centroid_distance, mask_centroids, mask_iou
from .render import ClipTruth, RenderedBatch, render_batch, render_clip
from .stream import ToyStream
from .world import (
    ACTIONS,
    ANIMAL_COLORS,
    ANIMALS,
    BACKGROUND_COLORS,
    BACKGROUNDS,
    DEFAULT_SIZE,
    EVAL_SEED_OFFSET,
    FPS,
    MOTION_OF_ACTION,
    MOTIONS,
    TRAIN_SEED_RANGE,
    Scene,
    all_scenes,
    check_scene,
    eval_seed,
    is_eval_seed,
    random_scene,
    random_switch,
)

__all__ = ["ACTIONS", "ANIMALS", "ANIMAL_COLORS", "BACKGROUNDS", "BACKGROUND_COLORS", "ClipTruth", "ClipVerdict",
           "DEFAULT_SIZE", "DEGRADATIONS", "EVAL_SEED_OFFSET", "FPS", "FrameVerdicts", "MAX_CAPTION_WORDS",
           "MOTIONS", "MOTION_OF_ACTION", "RenderedBatch", "Scene", "TRAIN_SEED_RANGE", "ToyStream", "VOCABULARY",
           "all_scenes", "canonical_caption", "centroid_distance", "check_scene", "classify_motion", "degrade",
           "eval_seed", "is_eval_seed", "judge_clip", "judge_frames", "mask_centroids", "mask_iou",
           "parse_caption", "random_caption", "random_scene", "random_switch", "render_batch", "render_clip"]
