import itertools

import pytest

from streamdit.evaluation.paired import MEASURES, paired_clips, paired_markdown, sign_test
from streamdit.evaluation.scores import EvalSettings, adherence
from streamdit.pipeline import Pipeline


def brute_sign_test(wins: int, losses: int) -> float:
    """Every way n fair coins can fall, counting those at least as uneven as the observed split."""
    n = wins + losses
    seen = abs(wins - losses)
    hits = sum(1 for flips in itertools.product((0, 1), repeat=n) if abs(2 * sum(flips) - n) >= seen)
    return hits / 2 ** n


@pytest.mark.parametrize("wins,losses", [(0, 0), (1, 0), (3, 3), (8, 3), (5, 0), (0, 9), (2, 10)])
def test_sign_test_equals_enumeration(wins, losses):
    assert sign_test(wins, losses) == pytest.approx(brute_sign_test(wins, losses), abs=1e-12)


def test_sign_test_known_values():
    assert sign_test(8, 3) == pytest.approx(2 * (1 + 11 + 55 + 165) / 2048)
    assert sign_test(6, 0) == pytest.approx(2 / 64)
    with pytest.raises(ValueError, match="count clips"):
        sign_test(-1, 2)


def clip(scene, seed, frames=48, ones=40, **right):
    return {"scene": list(scene), "seed": seed, "frames": frames, "one_sprite_frames": ones,
            **{m: right.get(m, False) for m in MEASURES}}


def test_pairs_are_matched_by_scene_and_seed_not_by_order():
    s1, s2, s3 = ("pig", "walking left", "grass"), ("cat", "jumping", "snow"), ("dog", "walking right", "sea")
    a = [clip(s1, 1, motion=True, animal=True, ones=44), clip(s2, 2, motion=True, ones=30), clip(s3, 3, ones=20)]
    b = [clip(s3, 3, animal=True, ones=20), clip(s1, 1, motion=True, ones=40), clip(s2, 2, ones=35)]
    r = paired_clips(a, b)
    assert r["clips"] == 3
    assert r["motion"] == {"a": 1, "b": 0, "both": 1, "neither": 1, "p": 1.0}
    assert (r["animal"]["a"], r["animal"]["b"], r["animal"]["both"], r["animal"]["neither"]) == (1, 1, 0, 1)
    f = r["one_sprite_frames"]
    assert (f["a"], f["b"], f["same"], f["frames_a"], f["frames_b"], f["frames"]) == (1, 1, 1, 94, 95, 144)
    table = paired_markdown(r, "new", "old")
    assert "| motion | 1 | 0 | 1 | 1 | 1.00 |" in table
    assert "one-sprite frames (94 vs 95 of 144)" in table
    assert r["all"] == {"a": 0, "b": 0, "both": 0, "neither": 3, "p": 1.0}
    b[1].update(animal=True, background=True, one_sprite=True)  # s1 right on all four in b only
    assert paired_clips(a, b)["all"] == {"a": 0, "b": 1, "both": 0, "neither": 2, "p": 1.0}


def test_different_clips_are_refused():
    s1, s2 = ("pig", "walking left", "grass"), ("cat", "jumping", "snow")
    with pytest.raises(ValueError, match="different clips"):
        paired_clips([clip(s1, 1)], [clip(s1, 2)])
    with pytest.raises(ValueError, match="twice"):
        paired_clips([clip(s1, 1), clip(s1, 1)], [clip(s1, 1), clip(s2, 2)])


def test_real_eval_clips_pair_with_themselves():
    # the clip records eval writes carry every field the pairing reads
    a = adherence(Pipeline.load("random:toy"), EvalSettings(seed_set="ci", scenes=2, long_streams=0,
                                                            change_streams=0))
    r = paired_clips(a["clips"], a["clips"])
    assert r["clips"] == 2
    for m in MEASURES:
        assert r[m]["a"] == r[m]["b"] == 0 and r[m]["p"] == 1.0
        assert r[m]["both"] == a[m]["hits"]
    assert r["all"]["both"] == a["all"]["hits"]  # "all" is the eval tables' "all four"
    assert r["one_sprite_frames"]["frames_a"] == a["one_sprite_frames"]["hits"]
