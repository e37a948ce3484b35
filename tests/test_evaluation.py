"""The eval: Wilson intervals, and that the judged scores separate a perfect video source from a random model."""
import math
from types import SimpleNamespace

import pytest
import torch

from streamdit.evaluation import EvalSettings, evaluate_model, motion_speed, render_markdown, wilson
from streamdit.evaluation.report import score_gaps
from streamdit.network.config import StreamDefaults
from streamdit.sampling.prompts import PromptTrack
from streamdit.toyworld import ToyStream, parse_caption

QUICK = EvalSettings(scenes=6, clip_seconds=2.0, long_streams=1, long_seconds=8.0, window_seconds=3.0,
                     change_streams=2, change_before=2.0, change_after=2.5, change_delay=1.0)


def test_wilson_interval_matches_known_values():
    lo, hi = wilson(9, 10)
    assert abs(lo - 0.5958) < 1e-3 and abs(hi - 0.9821) < 1e-3
    assert wilson(0, 48)[0] == 0.0 and 0.07 < wilson(0, 48)[1] < 0.08
    assert wilson(48, 48)[1] == pytest.approx(1.0) and 0.92 < wilson(48, 48)[0] < 0.93


def test_motion_speed_wraps_and_skips_frames_without_an_animal():
    c = torch.tensor([[62.0, 10], [0.0, 10], [2.0, 10], [float("nan"), float("nan")], [3.0, 10]])
    assert motion_speed(c, 64) == pytest.approx(2.0)


class RenderPipe:
    """Streams the toy world's own renders of the prompted scene: what a perfect model would make."""

    def __init__(self):
        self.bundle = SimpleNamespace(defaults=StreamDefaults(width=64, height=64, fps=16.0, codec={},
                                                              buffer_frames=16, chunk_frames=2, micro_steps=1))

    def cold_steps(self, micro_steps):
        return 0  # Pipeline's interface: the renders have no start to take steps

    def stream(self, prompt, seed=0, micro_steps=None, cfg_scale=1.0):
        events = PromptTrack.from_text(prompt, 16.0).events

        def scene(text):
            animal, action, background = parse_caption(text)
            return (animal, action, background)

        world = ToyStream(scene(events[0][1]), seed)

        def frames(n):
            for t in range(n):
                now = [p for at, p in events if at <= t][-1]
                if scene(now) != world.scene:
                    world.set_scene(scene(now))
                yield world.read(1)

        return SimpleNamespace(frames=frames, take=lambda n: torch.cat(list(frames(n))))


def test_eval_gives_full_marks_to_the_renders_and_writes_tables(tmp_path):
    r = evaluate_model(RenderPipe(), QUICK, "renders")
    a = r["adherence"]
    assert a["all"]["total"] == 6 and a["all"]["value"] == 1.0
    assert a["speed"] == pytest.approx(a["truth_speed"], rel=1e-6) and a["speed"] > 0.3
    last = r["long"]["last"]
    assert last["animal"]["value"] > 0.97 and last["background"]["value"] == 1.0 and last["motion"]["value"] == 1.0
    assert r["change"]["cat_after"]["value"] > 0.97 and r["change"]["pig_before"]["value"] > 0.97
    md = render_markdown({"teacher": r, "student": r})
    assert "| renders" not in md and "| student | 1 / 1 | 6 | 100.0% [" in md and "largest drop 0.0 points" in md
    assert "| motion by action |" in md and "| 4/4 walks, 2/2 jumps |" in md  # walks and jumps counted apart
    assert max(score_gaps(r, r).values()) == 0.0
    # a student judged on one more (lost) stream is compared with the teacher on the stream both ran
    lost = {"scene": ["dog", "jumping", "sea"], **{w: {"animal": 0, "background": 48, "frames": 48, "motion": 0,
                                                       "pieces": 1, "speed": 0.0} for w in ("first", "last")}}
    more = {**r, "long": {**r["long"], "streams": r["long"]["streams"] + [lost]}}
    assert max(score_gaps(r, more).values()) == 0.0
    assert "long streams compared on the 1 both ran" in render_markdown({"teacher": r, "student": more})
    from streamdit.evaluation.report import plot_models

    png = tmp_path / "models.png"
    assert plot_models({"teacher": r, "student": r}, png) and png.read_bytes()[:4] == b"\x89PNG"


def test_eval_fails_an_untrained_model():
    from streamdit.pipeline import Pipeline

    pipe = Pipeline.load("random:toy")
    r = evaluate_model(pipe, EvalSettings(scenes=4, clip_seconds=1.0, long_streams=0, change_streams=1,
                                          change_before=1.0, change_after=1.5, change_delay=0.5), "random")
    assert r["adherence"]["all"]["value"] < 0.5 and r["change"]["cat_after"]["value"] < 0.5
    from streamdit.evaluation.report import motion_by_action

    clips = r["adherence"]["clips"]  # scenes 0, 17, 34, 3: three walks and a jump, none of them right
    assert [c["scene"][1] for c in clips].count("jumping") == 1 and not any(c["motion"] for c in clips)
    assert motion_by_action(clips) == "0/3 walks, 0/1 jumps" and motion_by_action([]) == "-"


def test_edit_measurements_on_known_answers():
    from streamdit.evaluation.edit_scores import background_psnr, dilate, edit_sources

    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 4, 4] = True
    assert dilate(m, 1).sum() == 9 and dilate(m, 0).sum() == 1
    src = torch.full((1, 8, 8, 3), 0.5)
    out = src.clone()
    out[0, 4, 4] = 0.0  # a wrong pixel inside the mask does not count
    assert background_psnr(out, src, ~dilate(m, 1)) == pytest.approx(100.0)
    out[0, 0, 0] += 0.1  # one off pixel in 55 kept ones: MSE 0.01 / 55
    assert background_psnr(out, src, ~dilate(m, 1)) == pytest.approx(10 * math.log10(5500.0), rel=1e-4)
    s = edit_sources(2, 1.0, 16.0, (64, 64))
    assert [x["scene"] for x in s] == [("pig", "walking left", "grass"), ("pig", "walking right", "grass")]
    assert s[0]["frames"].shape == (16, 64, 64, 3) and s[0]["masks"].any()
    from streamdit.toyworld.seed_sets import DEV, SEALED
    assert [x["seed"] for x in s] == list(DEV.edits[:2])
    sealed = edit_sources(2, 1.0, 16.0, (64, 64), seeds="sealed")
    assert [x["seed"] for x in sealed] == list(SEALED.edits[:2])
    assert not torch.equal(sealed[0]["frames"], s[0]["frames"])
    with pytest.raises(ValueError, match="the ci seed set has 2 edit sources; asked for 3"):
        edit_sources(3, 1.0, 16.0, (64, 64), seeds="ci")


def test_edit_sweep_runs_and_plots(tiny_bundle, tmp_path):
    from streamdit.evaluation.edit_scores import edit_markdown, edit_scores, edit_sources, plot_sweep
    from streamdit.pipeline import Pipeline

    b = tiny_bundle
    bundle = type(b)(b.model, b.config, b.text_encoder, b.codec,
                     type(b.defaults)(**{**b.defaults.__dict__, "width": 32, "height": 32}), b.meta)
    pipe = Pipeline(bundle, torch.device("cpu"), torch.float32)
    rows = edit_scores(pipe, [0.25, 1.0], edit_sources(2, 1.0, 8.0, (32, 32)))
    assert [r["strength"] for r in rows] == [0.25, 1.0]
    # a random model barely changes the source at the lowest strength and replaces it at strength 1
    assert rows[0]["background_psnr"] > rows[1]["background_psnr"] + 3
    # guided away from each source's own caption: a second network pass changes the output
    guided = edit_scores(pipe, [0.5], edit_sources(2, 1.0, 8.0, (32, 32)), cfg_scale=2.0)
    plain = edit_scores(pipe, [0.5], edit_sources(2, 1.0, 8.0, (32, 32)))
    # each source edited once per noise seed: two seeds, twice the edits, each counted once in the interval
    two = edit_scores(pipe, [0.5], edit_sources(1, 1.0, 8.0, (32, 32)), seed=(0, 1))
    assert two[0]["noise_seeds"] == 2 and two[0]["target"]["total"] == 16 and len(two[0]["target"]["per_stream"]) == 2
    assert guided[0]["negative"] == "source" and guided[0]["background_psnr"] != plain[0]["background_psnr"]
    md = edit_markdown(rows + guided, "tiny", 2, 1.0)
    assert "| none | 0.250 |" in md and "| cfg 2, away from the source caption | 0.500 |" in md
    png = tmp_path / "sweep.png"
    assert plot_sweep(rows + guided, png) and png.read_bytes()[:4] == b"\x89PNG"


def test_edit_targets_need_all_three_at_once():
    from streamdit.evaluation.edit_scores import meets_targets

    row = {"target": {"value": 0.95}, "background_psnr": 27.0, "centroid_px": 2.0}
    assert meets_targets(row)
    assert not meets_targets({**row, "target": {"value": 0.89}})
    assert not meets_targets({**row, "background_psnr": 24.9})
    assert not meets_targets({**row, "centroid_px": 3.4})
    assert meets_targets({**row, "centroid_px": 5.0}, width=128)  # the motion target scales with the frame size


def test_stream_scores_count_streams_not_frames_and_old_results_are_marked():
    from streamdit.evaluation.scores import stream_rate

    # two streams hold their animal, two lose it: the pooled share is 50%, and four streams cannot say more
    r = stream_rate([160, 0, 0, 160], [160] * 4)
    assert r["value"] == 0.5 and r["per_stream"] == [1.0, 0.0, 0.0, 1.0]
    assert r["ci95"] == pytest.approx(list(wilson(2, 4)))
    assert r["ci95"][1] - r["ci95"][0] > 0.6 > wilson(320, 640)[1] - wilson(320, 640)[0]
    assert stream_rate([10, 10], [10, 10])["ci95"][0] < 0.9  # all held, but only two streams
    r = evaluate_model(RenderPipe(), QUICK, "renders")
    assert r["long"]["last"]["animal"]["interval"] == "streams" and len(r["change"]["streams"]) == 2
    # a result written before per-stream records (judge v1 then, on what is now the dev set): in the history
    old = {**r, "change": {k: v for k, v in r["change"].items() if k != "streams"},
           "settings": {**r["settings"], "seed_set": "test", "judge": "v1"}}
    old["change"] = {**old["change"], "cat_after": {**old["change"]["cat_after"], "interval": None}}
    md = render_markdown({"new": r, "old": old})
    assert "| new | 2 | 1 s |" in md and "| old | - | 1 s |" in md and "]† |" in md
    assert md.count("†") == 2  # the legend and the old model's cat score
    assert md.index("## Judge v2 on the dev set") < md.index("## History: judge v1 on the dev seeds")


def test_impossible_eval_settings_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="scenes 0 must be at least 1"):
        EvalSettings(scenes=0)
    with pytest.raises(ValueError, match="shorter than their 10 s windows"):
        EvalSettings(long_seconds=5.0)
    with pytest.raises(ValueError, match="longer than the delay"):
        EvalSettings(change_after=1.0)
    with pytest.raises(ValueError, match="seed set 'train' is not one of dev, sealed, ci"):
        EvalSettings(seed_set="train")
    with pytest.raises(ValueError, match="judge 'v3' is not one of v1, v2"):
        EvalSettings(judge="v3")
    with pytest.raises(ValueError, match="the ci set has 6 clip seeds, 48 asked"):
        EvalSettings(seed_set="ci")
    EvalSettings(seed_set="ci", scenes=6, long_streams=2, change_streams=2)
    EvalSettings(long_streams=0, long_seconds=1.0)  # no long streams: their length does not matter


class RecordingPipe(RenderPipe):
    """RenderPipe that notes every prompt and seed it is asked for."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def stream(self, prompt, seed=0, micro_steps=None, cfg_scale=1.0):
        self.calls.append((prompt, seed))
        return super().stream(prompt, seed, micro_steps, cfg_scale)


TINY = dict(scenes=2, clip_seconds=1.0, long_streams=1, long_seconds=2.0, window_seconds=1.0, change_streams=1,
            change_before=1.0, change_after=1.5, change_delay=0.5, judge="v1")  # v1: cheapest, wiring only


def test_seed_sets_choose_seeds_and_captions():
    import random

    from streamdit.evaluation.scores import scene_list
    from streamdit.toyworld import canonical_caption
    from streamdit.toyworld.seed_sets import DEV, SEALED, sealed_caption

    runs = {}
    for name in ("dev", "sealed", "sealed"):
        pipe = RecordingPipe()
        r = evaluate_model(pipe, EvalSettings(seed_set=name, **TINY))
        runs.setdefault(name, []).append(pipe.calls)
    scenes = scene_list(EvalSettings(**TINY))
    long_scene, pig = ("pig", "walking right", "snow"), ("pig", "walking left", "grass")
    dev = runs["dev"][0]
    assert [seed for _, seed in dev] == [DEV.clips[0], DEV.clips[1], DEV.long_streams[0], DEV.change_streams[0]]
    assert [p for p, _ in dev[:3]] == [canonical_caption(x) for x in (*scenes, long_scene)]
    assert dev[3][0] == f"0s: {canonical_caption(pig)}\n1s: {canonical_caption(('cat', *pig[1:]))}"
    sealed = runs["sealed"][0]
    assert [seed for _, seed in sealed] == [SEALED.clips[0], SEALED.clips[1], SEALED.long_streams[0],
                                           SEALED.change_streams[0]]
    for (prompt, seed), scene in zip(sealed, (*scenes, long_scene)):  # drawn from the seed: reproducible
        assert prompt == sealed_caption(scene, random.Random(seed)) != canonical_caption(scene)
        assert parse_caption(prompt) == scene
    rng = random.Random(SEALED.change_streams[0])
    assert sealed[3][0] == f"0s: {sealed_caption(pig, rng)}\n1s: {sealed_caption(('cat', *pig[1:]), rng)}"
    assert runs["sealed"][1] == sealed
    assert r["adherence"]["clips"][0]["prompt"] == sealed[0][0] and r["settings"]["seed_set"] == "sealed"


def test_judge_v2_counts_sprites_and_needs_all_four():
    r = evaluate_model(RenderPipe(), EvalSettings(**{**TINY, "judge": "v2", "clip_seconds": 2.0}))
    a = r["adherence"]
    assert a["one_sprite"]["value"] == 1.0 and a["one_sprite_frames"]["interval"] == "streams"
    assert a["all"]["value"] == 1.0 and set(r["long"]["last"]) >= {"one_sprite", "animal"}
    assert "one_sprite_after" in r["change"] and r["long"]["no_drift"]["total"] == 1
    # a clip with two sprites is not right on "all four", though animal, background and motion hold
    from streamdit.evaluation.scores import adherence_rates

    twice = [{**c, "one_sprite": False} if i == 0 else c for i, c in enumerate(a["clips"])]
    assert adherence_rates(twice)["all"]["value"] == 0.5 and adherence_rates(twice)["animal"]["value"] == 1.0


def test_log_appends_and_refuses_a_second_sealed_scoring(tmp_path):
    from streamdit.cli import main
    from streamdit.evaluation.log import append_log, check_sealed, file_sha256, log_entry, read_log

    log, model, other = tmp_path / "log.jsonl", tmp_path / "m.safetensors", tmp_path / "o.safetensors"
    model.write_bytes(b"weights")
    other.write_bytes(b"other weights")
    sha = file_sha256(model)
    check_sealed(log, sha, "m")  # no log yet
    r = evaluate_model(RenderPipe(), EvalSettings(seed_set="sealed", **TINY))
    entry = log_entry("m", str(model), sha, r)
    assert entry["seed_set"] == "sealed" and entry["judge"] == "v1" and entry["headline"]["adherence all"] == 1.0
    append_log(log, {**entry, "seed_set": "dev"})
    check_sealed(log, sha, "m")  # a dev scoring does not count
    append_log(log, entry)
    with pytest.raises(ValueError, match="scored on the sealed set already.*--rescore-sealed"):
        check_sealed(log, sha, "m")
    check_sealed(log, sha, "m", rescore=True)
    check_sealed(log, file_sha256(other), "o")  # another file
    assert [e["seed_set"] for e in read_log(log)] == ["dev", "sealed"]  # appended, never rewritten
    # the command refuses before it loads or measures anything (this file is no model)
    assert main(["eval", "--model", f"m={model}", "--seed-set", "sealed", "--log", str(log), "--out", "",
                 "--json", "", "--plot", ""]) == 2
    assert len(read_log(log)) == 2


def test_result_keys_keep_every_kind_of_run_of_a_model():
    from streamdit.evaluation.report import groups, model_name, result_key

    v1 = {"settings": {"seed_set": "test"}}  # written before judge v2: judge v1, on what is now dev
    v2_dev, v2_sealed = {"settings": {"seed_set": "dev", "judge": "v2"}}, {"settings": {"seed_set": "sealed",
                                                                                          "judge": "v2"}}
    assert result_key("student", "v2", "dev", {}) == "student"
    assert result_key("student", "v2", "dev", {"student": v2_dev}) == "student"  # measured again: replaced
    assert result_key("student", "v2", "dev", {"student": v1}) == "student (dev, judge v2)"  # v1 history kept
    assert result_key("student", "v2", "sealed", {}) == "student (sealed, judge v2)"
    assert model_name("student (sealed, judge v2)", v2_sealed) == "student" == model_name("student", v1)
    both = {"student": v1, "student (sealed, judge v2)": v2_sealed}
    assert list(groups(both)) == [("v2", "sealed"), ("v1", "dev")]
    assert all(list(g) == ["student"] for g in groups(both).values())


def test_judge_v2_beside_v1_tells_the_same_file_from_a_retrained_one():
    r = evaluate_model(RenderPipe(), QUICK, "renders")
    sealed = {"settings": {**r["settings"], "seed_set": "sealed", "judge": "v2"}}
    old = {"settings": {**r["settings"], "seed_set": "test", "judge": "v1"}}
    results = {"student": {**r, **old, "sha256": "aa", "path": "gone/student.safetensors"},
               "diagonal": {**r, **old, "path": "gone/diagonal.safetensors"},  # v1's file, never hashed
               "student (sealed, judge v2)": {**r, **sealed, "sha256": "aa", "date": "2026-12-04"},
               "diagonal (sealed, judge v2)": {**r, **sealed, "sha256": "bb", "date": "2026-12-05"}}
    md = render_markdown(results)
    assert "## Judge v2 on the sealed set (2026-12-04 to 2026-12-05)" in md  # scored on two days
    beside = md[md.index("### Beside judge v1"):md.index("## History")]
    assert "| student: v2, sealed | student: v1, dev | diagonal: v2, sealed | diagonal: v1, dev (earlier run) |" \
        in beside and "except diagonal (marked \"earlier run\")" in beside
    history = md[md.index("## History"):]
    assert "Re-scored with judge v2 above: student." in history
    assert "Trained again and scored with judge v2 above (the files judged here were not kept): diagonal." in history
    assert "Not re-scored" not in history
