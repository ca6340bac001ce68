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
from faceedit.cli import app

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
    assert report("ok", "no_face").exit_code == 5
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


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    quiet = runner.invoke(app, ["edit", str(tmp_path / "none-*.png"), "--add", "Male"])
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output
    loud = runner.invoke(app, ["--debug", "edit", str(tmp_path / "none-*.png"), "--add", "Male"])
    assert isinstance(loud.exception, errors.UsageError)


def test_broken_pipe_is_not_reported_as_a_bug() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m faceedit models list | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.stdout.startswith("NAME") and "Error" not in proc.stderr
