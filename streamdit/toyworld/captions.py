"""Captions: one canonical phrasing per scene, many random rewordings, a closed vocabulary and a parser.

Canonical: "a <pig|cat|dog|duck> <walking left|walking right|jumping> <on grass|on snow|by the sea|at night>";
a background-only scene reads "no animal <background phrase>".
"""
from __future__ import annotations

import re

from .world import ANIMALS, BACKGROUNDS, Rng, Scene, check_scene, choice

_CANON_BG = {"grass": "on grass", "snow": "on snow", "sea": "by the sea", "night": "at night"}

NOUNS = {"pig": ("pig", "piggy", "piglet"), "cat": ("cat", "kitty", "kitten"),
         "dog": ("dog", "doggy", "puppy"), "duck": ("duck", "duckling", "ducky")}
COLOR_WORDS = {"pig": ("pink",), "cat": ("orange", "ginger"), "dog": ("brown",), "duck": ("yellow",)}
_SIZE_WORDS = ("little", "small", "cute")

# (participle phrases, present-tense phrases) per action
_ACTION_FORMS = {
    "walking left": (("walking left", "walking to the left", "moving left", "moving to the left", "heading left",
                      "going left", "trotting left"),
                     ("walks left", "walks to the left", "moves left", "moves to the left", "heads left",
                      "goes left")),
    "walking right": (("walking right", "walking to the right", "moving right", "moving to the right",
                       "heading right", "going right", "trotting right"),
                      ("walks right", "walks to the right", "moves right", "moves to the right", "heads right",
                       "goes right")),
    "jumping": (("jumping", "hopping", "jumping in place", "hopping in place", "bouncing", "jumping up and down",
                 "hopping up and down"),
                ("jumps", "hops", "jumps in place", "hops in place", "bounces", "jumps up and down")),
}
_BG_FORMS = {
    "grass": ("on grass", "on the grass", "in the grass", "on a grassy field", "on a green meadow", "in a meadow",
              "on a lawn"),
    "snow": ("on snow", "in the snow", "on the snow", "on a snowy field", "in winter snow", "on snowy ground"),
    "sea": ("by the sea", "by the ocean", "at the sea", "near the sea", "by the blue sea", "at the seaside",
            "by the water"),
    "night": ("at night", "at nighttime", "in the dark", "in the night", "under the night sky", "on a dark night",
              "under the stars"),
}
_EMPTY_FORMS = ("no animal", "nothing", "an empty scene", "empty scene", "nobody")
_TEMPLATES = ("{np} {part} {bg}", "{bg}, {np} {part}", "{np} {verb} {bg}", "{np} is {part} {bg}",
              "{np} {bg}, {part}", "{bg}, {np} {verb}")
_EMPTY_TEMPLATES = ("{empty} {bg}", "{bg}, {empty}")

_WORD = re.compile(r"[a-z]+")


def canonical_caption(scene: Scene | tuple) -> str:
    """The canonical phrasing, e.g. "a pig walking right on grass"."""
    animal, action, background = check_scene(scene)
    if animal is None:
        return f"no animal {_CANON_BG[background]}"
    return f"a {animal} {action} {_CANON_BG[background]}"


def _article(word: str, definite: bool) -> str:
    return "the" if definite else ("an" if word[0] in "aeiou" else "a")


def _noun_phrase(animal: str, rng: Rng) -> str:
    noun = choice(rng, NOUNS[animal])
    adjective = choice(rng, ("", "", "") + COLOR_WORDS[animal] + _SIZE_WORDS)
    words = f"{adjective} {noun}".strip()
    return f"{_article(words, choice(rng, (False, True)))} {words}"


def random_caption(scene: Scene | tuple, rng: Rng, templates=None, empty_templates=None) -> str:
    """A random rewording naming the animal, the action and the background (rng: random/numpy/torch).
    templates / empty_templates: other word orders (the sealed eval set's); None: training's."""
    animal, action, background = check_scene(scene)
    bg = choice(rng, _BG_FORMS[background])
    if animal is None:
        return choice(rng, empty_templates or _EMPTY_TEMPLATES).format(empty=choice(rng, _EMPTY_FORMS), bg=bg)
    parts, verbs = _ACTION_FORMS[action]
    return choice(rng, templates or _TEMPLATES).format(np=_noun_phrase(animal, rng), part=choice(rng, parts),
                                                       verb=choice(rng, verbs), bg=bg)


def _phrases() -> list[str]:
    out = ["a an the is no animal", " ".join(_SIZE_WORDS)]
    out += [w for ws in (*NOUNS.values(), *COLOR_WORDS.values(), *_BG_FORMS.values(), _EMPTY_FORMS) for w in ws]
    out += [p for forms in _ACTION_FORMS.values() for ps in forms for p in ps]
    return out


VOCABULARY: list[str] = sorted({w for p in _phrases() for w in _WORD.findall(p)})
# The longest caption random_caption can produce, in words (the toy text encoder reads at most 16).
MAX_CAPTION_WORDS = (3 + 1 + max(len(p.split()) for forms in _ACTION_FORMS.values() for p in forms[0])
                     + max(len(p.split()) for ps in _BG_FORMS.values() for p in ps))

_ANIMAL_WORDS = {w: a for a, ws in NOUNS.items() for w in ws}
_BG_WORDS = {"grass": "grass", "grassy": "grass", "meadow": "grass", "lawn": "grass", "snow": "snow",
             "snowy": "snow", "winter": "snow", "sea": "sea", "ocean": "sea", "seaside": "sea", "water": "sea",
             "night": "night", "nighttime": "night", "dark": "night", "stars": "night"}
_JUMP_WORDS = {"jumping", "jumps", "hopping", "hops", "bouncing", "bounces"}
_EMPTY_WORDS = {"no", "nothing", "empty", "nobody"}


def _one(found: set, what: str, text: str):
    if len(found) > 1:
        raise ValueError(f"caption {text!r} names more than one {what}: {sorted(found)}")
    return next(iter(found), None)


def parse_caption(text: str) -> tuple[str | None, str | None, str]:
    """(animal, action, background) of any caption this module generates; animal/action None if empty."""
    words = _WORD.findall(text.lower())
    unknown = sorted({w for w in words if w not in _VOCAB_SET})
    if unknown:
        raise ValueError(f"unknown word(s) {', '.join(map(repr, unknown))} in caption {text!r}")
    background = _one({_BG_WORDS[w] for w in words if w in _BG_WORDS}, "background", text)
    if background is None:
        raise ValueError(f"caption {text!r} names no background (one of {BACKGROUNDS})")
    animal = _one({_ANIMAL_WORDS[w] for w in words if w in _ANIMAL_WORDS}, "animal", text)
    if animal is None:
        if not _EMPTY_WORDS & set(words):
            raise ValueError(f"caption {text!r} names no animal (one of {ANIMALS})")
        return None, None, background
    def action_of(w: str) -> tuple[str, ...]:
        return ("walking left",) if w == "left" else ("walking right",) if w == "right" else (
            ("jumping",) if w in _JUMP_WORDS else ())

    moves = {a for w in words for a in action_of(w)}
    action = _one(moves, "action", text)
    if action is None:
        raise ValueError(f"caption {text!r} names no action (left, right or jumping)")
    return animal, action, background


_VOCAB_SET = frozenset(VOCABULARY)
