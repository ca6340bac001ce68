"""convert/: one prefix-discovery rule for local folders and hub folders; the old module paths still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceedit.convert.tf_prefix import choose_prefix, find_prefix, resolve_prefix
from faceedit.errors import CheckpointError


def test_old_module_paths_are_the_moved_modules() -> None:
    import faceedit.tfckpt
    import faceedit.tfimport
    import faceedit.tfremote
    from faceedit.convert import tf_bundle, tf_plans, tf_remote

    assert faceedit.tfckpt is tf_bundle and faceedit.tfimport is tf_plans and faceedit.tfremote is tf_remote
    assert faceedit.tfimport.import_tf_checkpoint is tf_plans.import_tf_checkpoint


def test_the_state_file_wins_and_loses_the_authors_path() -> None:
    state = 'model_checkpoint_path: "/home/a/run/model-9"\nall_model_checkpoint_paths: "model-3"\n'
    assert choose_prefix("run", state, ["model-3.index", "model-9.index"]) == "model-9"
    assert choose_prefix("run", 'model_checkpoint_path: "C:\\\\runs\\\\m-2"', []) == "m-2"
    assert choose_prefix("run", None, ["m-2.index", "m-2.data-00000-of-00001", "checkpoint"]) == "m-2"


@pytest.mark.parametrize(
    ("names", "found"), [([], "no .index file"), (["a.index", "b.index"], "2 checkpoints")]
)
def test_no_single_checkpoint_is_an_error_naming_the_folder(names: list[str], found: str) -> None:
    with pytest.raises(CheckpointError, match=f"run: no 'checkpoint' file and {found}"):
        choose_prefix("run", None, names)


def test_local_paths(tmp_path: Path) -> None:
    (tmp_path / "m-2.index").write_bytes(b"")
    assert resolve_prefix(tmp_path) == find_prefix(tmp_path) == tmp_path / "m-2"
    assert find_prefix(tmp_path / "m-2.data-00000-of-00001") == tmp_path / "m-2"
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "m-5"\n')
    with pytest.raises(CheckpointError, match=r"m-5\.index is not in"):
        find_prefix(tmp_path)  # looks like a TF run, but is incomplete: say so, not "not a checkpoint"
    torch_run = tmp_path / "torch"
    torch_run.mkdir()
    (torch_run / "200000-G.ckpt").write_bytes(b"")
    assert find_prefix(torch_run) is None and find_prefix(torch_run / "200000-G.ckpt") is None
