"""The evaluation's seed sets, written down: dev (every decision), sealed (once per shipped model), ci (a regression).

All are held-out seeds (world.eval_seed: no training clip sees them), in blocks no other set touches:

- dev: every decision (checkpoints, guidance, strengths, recipes). It is the set the eval used until now
  (evaluation/scores.py's "test" blocks: clips eval_seed(0..47), long streams eval_seed(100_000..100_011),
  change streams eval_seed(200_000..200_007)): those seeds chose models, so they are dev seeds now.
- sealed: scored once per shipped model, never for a decision; fresh blocks, and captions written with
  SEALED_TEMPLATES, word orders that training never uses (same words, so the toy text encoder knows them).
- ci: a handful of seeds for a regression test.

Each set also has its pig source videos for the edit eval (`edits`; evaluation/edit_scores.py): dev's are
the sources the edit eval has always used (eval_seed(300_001..300_012)): they chose every edit setting so far.

RETIRED blocks also made decisions before (scores.py's old "dev" set from eval_seed(1_000_000), the edit
eval's block eval_seed(300_000), less dev's edit sources) or calibrate the judge (negatives.py,
eval_seed(9_000_000) on): no set here uses them.
"""
from __future__ import annotations

from dataclasses import dataclass

from .captions import random_caption
from .world import Rng, Scene, eval_seed

# Word orders training never uses (captions._TEMPLATES): fields as there, {np} a noun phrase, {part} a
# participle ("walking left"), {verb} a present form ("walks left"), {bg} a background phrase. At most
# captions.MAX_CAPTION_WORDS words, so every word lands on a position the text encoder was trained on.
SEALED_TEMPLATES = ("{np} {bg} {verb}", "{bg}, {np} is {part}", "{np} is {bg}, {part}", "{np}, {bg}, is {part}",
                    "{part}, {np} {bg}")
SEALED_EMPTY_TEMPLATES = ("{empty} is {bg}",)


@dataclass(frozen=True)
class SeedSet:
    name: str
    clips: tuple[int, ...]  # one per prompt-adherence clip
    long_streams: tuple[int, ...]
    change_streams: tuple[int, ...]
    templates: tuple[str, ...] = ()  # caption templates of its own (sealed); empty: canonical captions
    edits: tuple[int, ...] = ()  # one pig source video per edit (every action x background, cycled)

    @property
    def seeds(self) -> frozenset[int]:
        """The text-to-video seeds (clips, long streams, prompt changes)."""
        return frozenset(self.clips + self.long_streams + self.change_streams)

    @property
    def all_seeds(self) -> frozenset[int]:
        return self.seeds | frozenset(self.edits)


def _block(start: int, n: int) -> tuple[int, ...]:
    return tuple(eval_seed(start + i) for i in range(n))


DEV = SeedSet("dev", _block(0, 48), _block(100_000, 12), _block(200_000, 8), edits=_block(300_001, 12))
SEALED = SeedSet("sealed", _block(2_000_000, 48), _block(2_100_000, 12), _block(2_200_000, 8), SEALED_TEMPLATES,
                 edits=_block(2_300_000, 12))
CI = SeedSet("ci", _block(3_000_000, 6), _block(3_100_000, 2), _block(3_200_000, 2), edits=_block(3_300_000, 2))
SEED_SETS = {s.name: s for s in (DEV, SEALED, CI)}
RETIRED = (range(eval_seed(300_000), eval_seed(300_001)), range(eval_seed(300_013), eval_seed(400_000)),
           range(eval_seed(1_000_000), eval_seed(2_000_000)),
           range(eval_seed(9_000_000), eval_seed(11_000_000)))


def seed_set(name: str) -> SeedSet:
    if name not in SEED_SETS:
        raise ValueError(f"unknown seed set {name!r}; expected one of {', '.join(SEED_SETS)}")
    return SEED_SETS[name]


def sealed_caption(scene: Scene | tuple, rng: Rng) -> str:
    """A caption of the scene in one of the sealed word orders, with random synonyms (as random_caption)."""
    return random_caption(scene, rng, SEALED_TEMPLATES, SEALED_EMPTY_TEMPLATES)
