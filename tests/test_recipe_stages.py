"""The toy recipe's stage list: later stages load earlier ones that are finished on disk and never train them
unasked; a missing one is refused before anything trains."""
import re

import pytest

from streamdit.cli import main
from streamdit.train.toy import STAGES, ToyRecipe, check_stages, run


def test_student_or_export_without_a_finished_teacher_is_refused_before_training(tmp_path):
    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    teacher = tmp_path / "run" / "teacher" / "checkpoint-0000003.pt"
    refine = tmp_path / "run" / "teacher-refine" / "checkpoint-0000002.pt"
    tune = tmp_path / "run" / "teacher-tune" / "checkpoint-0000002.pt"
    message = (f"the student stage needs a finished teacher ({teacher}) and a finished teacher refinement ({refine}) "
               f"and a finished teacher tune ({tune}): "
               "run the teacher stage first (--stages teacher) or include it (--stages teacher,student)")
    with pytest.raises(ValueError, match=re.escape(message)):
        run(recipe, stages=("student",))
    assert not (tmp_path / "run").exists()  # refused before the autoencoder, or even the run folder
    with pytest.raises(ValueError, match=r"the export stage needs a finished teacher .* and a finished student "
                                         r".*: run the teacher and student stages first \(--stages teacher,student\) "
                                         r"or include them \(--stages teacher,student,export\)"):
        run(recipe, stages=("export",))
    with pytest.raises(ValueError, match="unknown stages \\['techer'\\]; use a comma-separated subset of "
                                         + ",".join(STAGES)):
        run(recipe, stages=("techer", "student"))


def test_a_finished_teacher_on_disk_lets_the_student_run_alone_and_a_partial_one_does_not(tmp_path):
    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    partial = tmp_path / "run" / "teacher" / "checkpoint-0000002.pt"  # 2 of 3 steps: resumable, not finished
    partial.parent.mkdir(parents=True)
    partial.touch()
    with pytest.raises(ValueError, match="needs a finished teacher"):
        check_stages(recipe, ("student",))
    (tmp_path / "run" / "teacher" / "checkpoint-0000003.pt").touch()
    with pytest.raises(ValueError, match="needs a finished teacher refinement"):  # part of the teacher stage
        check_stages(recipe, ("student",))
    refine = tmp_path / "run" / "teacher-refine" / "checkpoint-0000002.pt"
    refine.parent.mkdir()
    refine.touch()
    with pytest.raises(ValueError, match="needs a finished teacher tune"):  # tune_steps > 0: part of the teacher
        check_stages(recipe, ("student",))
    tune = tmp_path / "run" / "teacher-tune" / "checkpoint-0000002.pt"
    tune.parent.mkdir()
    tune.touch()
    check_stages(recipe, ("student",))
    check_stages(recipe, ("student", "export"))
    with pytest.raises(ValueError, match="the export stage needs a finished student"):
        check_stages(recipe, ("export",))
    # asking for the teacher itself resumes a partial one as before, and baselines export without a student
    check_stages(ToyRecipe.quick(str(tmp_path / "fresh")), ("teacher", "student", "export"))
    check_stages(ToyRecipe.baseline("diagonal", str(tmp_path / "run"), teacher_steps=3), ("export",))
    # a teacher taken from a file needs no teacher checkpoint, but its refinement and tune are trained here
    took = ToyRecipe.quick(str(tmp_path / "took"))
    took.teacher_from = "teacher.safetensors"
    with pytest.raises(ValueError, match="needs a finished teacher refinement") as info:
        check_stages(took, ("student",))
    assert "teacher/checkpoint" not in str(info.value)


def test_cli_refuses_the_student_stage_without_a_teacher(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--quick", "--out", str(out), "--stages", "student"]) == 2
    err = capsys.readouterr().err
    assert "the student stage needs a finished teacher" in err and "--stages teacher" in err
    assert main(["train", "--quick", "--out", str(out), "--stages", "cache,studnet"]) == 2
    assert f"use a comma-separated subset of {','.join(STAGES)}" in capsys.readouterr().err
    assert not out.exists()
