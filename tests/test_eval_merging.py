"""eval --rename: a replaced model's rows renamed in place, the new file's rows first, stale paths marked."""
import pytest

from streamdit.evaluation.log import file_sha256
from streamdit.evaluation.merging import current_first, rename_model, rename_spec


def run(seeds: str, path: str = "m.safetensors", sha: str = "0" * 64, score: float = 0.5) -> dict:
    return {"settings": {"seed_set": seeds, "judge": "v2"}, "path": path, "sha256": sha, "score": score}


def test_rename_keeps_places_and_kinds():
    results = {"student (sealed, judge v2)": run("sealed"), "old (sealed, judge v2)": run("sealed"),
               "student": run("dev"), "teacher": run("dev")}
    out = rename_model(results, "student", "v11-student")
    assert list(out) == ["v11-student (sealed, judge v2)", "old (sealed, judge v2)", "v11-student", "teacher"]
    assert out["v11-student"] == results["student"]  # a path that is not a file stays as it was


def test_new_rows_go_before_the_renamed_ones():
    results = rename_model({"student (sealed, judge v2)": run("sealed", score=1), "x": run("dev"),
                            "student": run("dev", score=2)}, "student", "v11-student")
    results.update({"student": run("dev", score=3), "student (sealed, judge v2)": run("sealed", score=4)})
    out = current_first(results, [("student", "v11-student")])
    assert list(out) == ["student (sealed, judge v2)", "v11-student (sealed, judge v2)", "x", "student",
                         "v11-student"]
    assert [r["score"] for r in out.values()] == [4, 1, 0.5, 3, 2]


def test_a_path_now_holding_another_file_is_marked_replaced(tmp_path):
    f = tmp_path / "streamdit-toy.safetensors"
    f.write_bytes(b"old weights")
    old_sha = file_sha256(f)
    f.write_bytes(b"new weights")
    out = rename_model({"student": run("dev", str(f), old_sha)}, "student", "v11-student")
    assert out["v11-student"]["path"] == f"{f} (replaced; sha256 {old_sha[:8]})"
    same = rename_model({"student": run("dev", str(f), file_sha256(f))}, "student", "v11-student")
    assert same["v11-student"]["path"] == str(f)


def test_bad_renames_say_what_to_do():
    with pytest.raises(ValueError, match="give OLD=NEW"):
        rename_spec("student")
    with pytest.raises(ValueError, match="give OLD=NEW"):
        rename_spec("a=a")
    assert rename_spec(" student = v11-student ") == ("student", "v11-student")
    with pytest.raises(ValueError, match="no model named 'studnet'.*models: student.*after the --merge"):
        rename_model({"student": run("dev")}, "studnet", "v11")
    with pytest.raises(ValueError, match="'v10' already has a dev-set, judge v2 run"):
        rename_model({"student": run("dev"), "v10": run("dev")}, "student", "v10")
    # another kind under the new name is no clash
    assert list(rename_model({"student": run("dev"), "v10 (sealed, judge v2)": run("sealed")}, "student", "v10")) \
        == ["v10", "v10 (sealed, judge v2)"]
