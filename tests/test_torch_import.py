"""The PyTorch importer skeleton (faceedit.convert.torch_import) and its hooks: the configs they write agree
with the table of facts (faceedit.specs), every model offers the key maps the skeleton calls, and the
run-folder rules pick the newest file by number."""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from faceedit import specs
from faceedit.convert import torch_archs, torch_files, torch_import
from faceedit.errors import UsageError
from faceedit.upstream import ARCH_NAMES, import_checkpoint

CASES = [  # (arch, fixture, options, label layout)
    ("stargan", "stargan/stargan_fixture", {}, None),
    ("stargan", "stargan/stargan_rafd", {"dataset": "rafd"}, "rafd"),
    ("stargan", "stargan/stargan_both", {}, "both"),
    ("attgan", "attgan/output/fixture_32_shortcut2_inject1", {}, None),
    ("stgan", "stgan/experiments/stgan_fixture", {}, None),
    ("ugatit", "ugatit/results/fixture_light", {"direction": "B2A"}, None),
]


@pytest.mark.parametrize(("arch", "where", "options", "labels"), CASES)
def test_imported_configs_agree_with_the_table(
    fixtures_dir: Path, arch: str, where: str, options: dict, labels: str | None
) -> None:
    config = import_checkpoint(arch, fixtures_dir / where, **options).config
    spec = specs.arch_spec(arch, "port", labels)
    assert (config["template"], config["resize"]) == (spec.template, spec.resize)
    assert config["conditioning"] == spec.conditioning()
    assert config["attributes"] == list(spec.attributes)
    assert config["generator_kwargs"].get("c2_dim", 0) == len(spec.expressions)


def test_every_pytorch_architecture_has_hooks_and_the_key_maps_they_call() -> None:
    assert set(torch_archs.HOOKS) == set(ARCH_NAMES) - {"attcls"}  # attcls is published in TF only
    for arch, hooks in torch_archs.HOOKS.items():
        model = importlib.import_module(f"faceedit.models.{arch}")
        assert hooks.arch == arch and isinstance(model.UPSTREAM, str)
        assert callable(model.generator_state) and callable(model.generator_kwargs)
        if hooks.attr_kwarg:  # a model with an attribute classifier maps its discriminator too
            assert callable(model.classifier_state) and callable(model.classifier_kwargs)


def test_celeba_hq_attgan_gets_the_ffhq_template(
    fixtures_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(fixtures_dir / "attgan/output/fixture_32_shortcut2_inject1", run)
    setting = json.loads((run / "setting.txt").read_text())
    (run / "setting.txt").write_text(json.dumps({**setting, "data": "CelebA-HQ", "thres_int": 0.75}))
    with caplog.at_level(logging.WARNING, logger="faceedit"):
        config = import_checkpoint("attgan", run).config
    assert config["template"] == "ffhq" and "ffhq crop template" in caplog.text
    assert config["conditioning"] == specs.arch_spec("attgan").conditioning(0.75)
    assert config["provenance"]["setting_file"] == "setting.txt"


def test_default_attribute_names_come_from_the_table() -> None:
    assert torch_import.attributes("stgan", 10, {}) == list(specs.STGAN_PORT_ATTRIBUTES)
    assert torch_import.attributes("stgan", 13, {}) == list(specs.ATTGAN_ATTRIBUTES)  # the TF list
    assert torch_import.attributes("stargan", 2, {"attrs": ["Male", "Young"]}) == ["Male", "Young"]
    with pytest.raises(UsageError, match="pass --attrs"):
        torch_import.attributes("stargan", 7, {})


def test_run_folders_give_the_newest_file_by_number(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("9000-G.ckpt", "10000-G.ckpt", "10000-D.ckpt", "notes-G.ckpt"):
        (models / name).write_bytes(b"")
    newest = torch_files.stargan_file(tmp_path)
    assert newest == models / "10000-G.ckpt"  # 10000 > 9000 although "9" sorts after "1"
    assert torch_files.stargan_d_beside(newest) == models / "10000-D.ckpt"
    assert torch_files.stgan_d_beside(tmp_path / "G_200.pth.tar") == tmp_path / "D_200.pth.tar"
    assert torch_files.stgan_d_beside(tmp_path / "G_latest.pth.tar") is None
    with pytest.raises(UsageError, match=r"no G_<iter>\.pth\.tar"):
        torch_files.stgan_file(tmp_path)
