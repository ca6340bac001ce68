"""The CLI's shared behaviour: version, help without torch, exit codes as documented, --debug."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceedit import __version__, errors
from faceedit.batch import Item, OutputPlan, Report, expand_inputs
from faceedit.cli import app, hoist_global_options

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def test_version_and_help() -> None:
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"faceedit {__version__}"
    result = runner.invoke(app, ["-h"])
    assert result.exit_code == 0
    for command in ("edit", "anime", "align", "detect", "models", "train", "export"):
        assert command in result.stdout


def test_help_does_not_import_torch_or_cv2() -> None:
    code = "import sys; from faceedit.cli import app; print('torch' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_readme_lists_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.M))
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert {int(c) for c in table} == codes


def test_report_exit_codes() -> None:
    def report(*statuses: str) -> Report:
        return Report([Item(Path(f"{i}.png"), status=s) for i, s in enumerate(statuses)])  # type: ignore[arg-type]

    assert report("ok", "skipped").exit_code == 0
    assert report("no_face", "no_face").exit_code == 3
    assert report("ok", "no_face").exit_code == 0  # a landscape in a folder of portraits is no failure
    assert report("skipped", "no_face").exit_code == 0
    assert report("failed", "no_face").exit_code == 5
    assert report("ok", "failed").exit_code == 5


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.JPG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.webp").write_bytes(b"x")
    assert [p.name for p in expand_inputs([str(tmp_path)])] == ["a.png", "b.JPG"]
    assert [p.name for p in expand_inputs([str(tmp_path)], recursive=True)] == ["a.png", "b.JPG", "c.webp"]
    assert [p.name for p in expand_inputs([str(tmp_path / "*.png"), str(tmp_path / "a.png")])] == ["a.png"]
    assert [p.name for p in expand_inputs(["-"], stdin=[f"{tmp_path}/notes.txt\n", "\n"])] == ["notes.txt"]
    with pytest.raises(errors.UsageError, match="no input images"):
        expand_inputs([str(tmp_path / "*.gif")])


def test_output_plan(tmp_path: Path) -> None:
    plan = OutputPlan(out_dir=tmp_path, suffix="_x", format="jpg")
    assert plan.path_for(Path("/photos/a.png")) == tmp_path / "a_x.jpg"
    assert OutputPlan().path_for(Path("/p/a.webp")) == Path("/p/a.webp")
    with pytest.raises(errors.OutputError, match="replace its input"):
        OutputPlan().check(Path("/p/a.webp"), source=Path("/p/a.webp"))
    with pytest.raises(errors.UsageError):
        OutputPlan(overwrite=True, skip_existing=True)
    with pytest.raises(errors.UsageError):
        OutputPlan(format="gif")


def test_output_plan_reserves_a_distinct_name_for_every_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [
        tmp_path / "in" / "a" / "p.png",
        tmp_path / "in" / "b" / "p.png",
        tmp_path / "in" / "b" / "p.jpg",
    ]
    plan = OutputPlan(out_dir=out, suffix="_x", format="png").for_inputs(inputs)
    assert [plan.path_for(p) for p in inputs] == [out / "a/p_x.png", out / "b/p_x.png", out / "b/p_x-2.png"]
    assert plan.path_for(inputs[2], tag="_0") == out / "b/p_x-2_0.png"
    flat = OutputPlan(out_dir=out).for_inputs(inputs[1:2])  # one folder: straight into -o
    assert flat.path_for(inputs[1]) == out / "p.png"
    beside = OutputPlan(suffix="_x").for_inputs(inputs)  # no -o: next to each input, as before
    assert beside.path_for(inputs[0]) == inputs[0].with_name("p_x.png")
    apart = [tmp_path / "in" / "a" / "p.png", tmp_path / "elsewhere" / "q.png"]  # no name clash: flat
    assert [OutputPlan(out_dir=out).for_inputs(apart).path_for(p) for p in apart] == [
        out / "p.png",
        out / "q.png",
    ]


@pytest.mark.parametrize("suffix", ["/../../escaped", "_a/b", "..\\x", "a\0b"])
def test_a_suffix_is_a_file_name_part(suffix: str) -> None:
    with pytest.raises(errors.UsageError, match="--suffix"):
        OutputPlan(suffix=suffix)
    assert OutputPlan(suffix="_v2.final").suffix == "_v2.final"


def test_check_refuses_a_folder_and_survives_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(errors.OutputError, match="exists as a folder"):
        OutputPlan(overwrite=True).check(tmp_path / "taken.png", source=tmp_path / "in.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    assert OutputPlan().check(tmp_path / "loop_x.png", source=tmp_path / "loop.png")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    quiet = runner.invoke(app, ["edit", str(tmp_path / "none-*.png"), "--add", "Male"])
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output
    for loud in (
        runner.invoke(app, ["--debug", "edit", str(tmp_path / "none-*.png"), "--add", "Male"]),
        runner.invoke(app, ["edit", str(tmp_path / "none-*.png"), "--add", "Male", "--debug"]),
    ):
        assert loud.exit_code == 2, loud.output  # the documented code, not 1
        assert "Traceback" in loud.stderr and "UsageError" in loud.stderr and "no input images" in loud.stderr


def test_debug_keeps_exit_code_4(tmp_path: Path) -> None:
    args = ["edit", str(tmp_path), "--add", "Male", "-m", str(tmp_path / "no-such-model")]
    assert runner.invoke(app, args).exit_code == 2  # no inputs first
    (tmp_path / "a.png").write_bytes(b"x")
    plain = runner.invoke(app, args)
    loud = runner.invoke(app, [*args, "--debug"])
    assert plain.exit_code == loud.exit_code == 4, loud.output
    assert "Traceback" in loud.stderr and "Traceback" not in plain.stderr


def test_global_options_work_after_the_sub_command(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    args = ["detect", str(tmp_path / "a.png"), "--json"]
    loud, quiet = runner.invoke(app, args), runner.invoke(app, [*args, "-q"])
    assert loud.exit_code == quiet.exit_code == 5
    assert "0 done, 1 failed" in loud.stderr and "0 done" not in quiet.stderr and "error:" in quiet.stderr
    assert runner.invoke(app, [*args, "-vv"]).exit_code == 5
    assert hoist_global_options(["detect", "x", "-q", "--", "-v"]) == ["-q", "detect", "x", "--", "-v"]
    assert hoist_global_options(["--debug", "edit", "-vv", "--add", "Male"]) == ["-vv", "--debug", "edit",
                                                                              "--add", "Male"]  # fmt: skip


@pytest.mark.parametrize("command", [[], ["detect"], ["edit"], ["align"], ["models", "list"]])
def test_flags_show_no_value_in_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, color=False)
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout and "--help" in result.stdout


def test_a_flag_given_a_value_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["detect", "--json", "true", str(tmp_path / "a.png")])
    assert result.exit_code == 2 and "take no value" in result.stderr


def test_broken_pipe_is_not_reported_as_a_bug() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m faceedit models list | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.stdout.startswith("NAME") and "Error" not in proc.stderr
