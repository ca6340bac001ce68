"""``faceedit models list | info | download | verify`` through CliRunner and real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceedit import hub, models, registry
from faceedit.cli import app
from tests import fakehub
from tests.fakehub import TINY_REPO, FakeHub, install_cards, tiny_stargan_card, tiny_stargan_files

fake_hub = fakehub.fake_hub  # fixtures: a running fake hub with per-test caches, and a subprocess env
hub_env = fakehub.hub_env
runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "faceedit", *args], capture_output=True, text=True, env=env)
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start


@pytest.fixture
def ours(fake_hub: FakeHub, tmp_path: Path) -> str:
    """A tiny model in faceedit's own format served as hub repo test/ours; returns its commit."""
    config = models.make_config(
        "stargan",
        {"conv_dim": 8, "c_dim": 5, "repeat_num": 2},
        attributes=list(registry.get_card("stargan-celeba-128").attributes),
        image_size=16,
        template="celeba-178",
        resize="bilinear",
        conditioning={"scheme": "stargan", "thres_int": 0.5, "rules": "port"},
    )
    return fake_hub.publish_model_folder("test/ours", models.save(models.build(config), tmp_path / "m"))


def test_list_table_and_json() -> None:
    code, out, _ = _invoke("models", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "TASK", "ARCH"]
    assert len(lines) == 1 + len(registry.list_cards())
    assert any(line.startswith("stargan-celeba-128 *") for line in lines)  # the default editor
    doc = json.loads(_invoke("models", "list", "--json")[1])
    assert [d["name"] for d in doc] == [c.name for c in registry.list_cards()]
    by_name = {d["name"]: d for d in doc}
    assert (
        by_name["stargan-celeba-128"]["cached"] == "no" and by_name["attgan-celeba-128"]["cached"] == "import"
    )
    assert by_name["ugatit-selfie2anime-256"]["default"] and by_name["stargan-celeba-128"]["attributes"][0]
    code, out, err = _invoke("models", "list", "--cached")
    assert code == 0 and out.splitlines()[1:] == [] and "no model is cached" in err


def test_list_counts_the_expressions_of_rafd_models() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "8 expressions" in rows["stargan-rafd-128"]
    assert "+ 8 expressions" in rows["stargan-celeba-rafd-128"]
    assert "expressions" not in rows["stargan-celeba-128"]


def test_list_and_help_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom faceedit.cli import main\n"
        "for argv in (['models', 'list'], ['models', '--help'], ['models', 'info', 'stargan-celeba-128']):\n"
        "    sys.argv = ['faceedit', *argv]\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "NO-TORCH", proc.stderr


def test_info_text_json_and_unknown_name() -> None:
    code, out, _ = _invoke("models", "info", "stargan-celeba-128")
    assert code == 0
    assert "goodfellowliu/StarGAN-PyTorch" in out and "non-commercial research" in out
    assert "licence: weights" in out and "Black_Hair, Blond_Hair" in out and "celeba-178" in out
    doc = json.loads(_invoke("models", "info", "attgan-celeba-128", "--json")[1])
    assert (
        doc["source"]["kind"] == "import-only" and "faceedit models import" in doc["source"]["instructions"]
    )
    assert doc["licences"]["dataset"].startswith("CelebA") and doc["cached"] == "import"
    code, out, err = _invoke("models", "info", "stargan-celeba-12")
    assert code == 2 and out == "" and "did you mean stargan-celeba-128" in err


def test_download_card_then_cached_list_and_verify(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.commit(TINY_REPO, tiny_stargan_files())
    install_cards(monkeypatch, tiny_stargan_card())
    code, out, err = _invoke("models", "download", "stargan-tiny")
    assert code == 0, err
    name, folder = out.strip().split("\t")
    assert name == "stargan-tiny" and Path(folder) == hub.converted_dir("stargan-tiny")
    assert "downloaded and verified" in err and fake_hub.count("GET") == 2
    fake_hub.stop()
    code, out, err = _invoke("models", "download", "stargan-tiny", "--offline")
    assert code == 0 and "already cached" in err
    code, out, _ = _invoke("models", "list", "--cached")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["stargan-tiny"]
    code, out, _ = _invoke("models", "verify", "stargan-tiny")
    assert code == 0 and out.count("ok") == 4
    weights = Path(folder) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    code, out, err = _invoke("models", "verify", "--json")
    assert code == 4 and "download NAME --force" in err
    bad = [c for c in json.loads(out) if c["status"] == "mismatch"]
    assert len(bad) == 1 and bad[0]["removed"] and not weights.exists()


def test_download_failures_exit_4_with_a_hint(fake_hub: FakeHub) -> None:
    code, out, err = _invoke("models", "download", "attgan-celeba-128")
    assert code == 4 and out == "" and "faceedit models import attgan" in err
    code, _, err = _invoke("models", "download", "hf:test/none")
    assert code == 4 and "not found" in err and "HF_ENDPOINT" in err
    code, _, err = _invoke("models", "download", "hf:test/none", "--offline")
    assert code == 4 and "offline" in err and "faceedit models download hf:test/none" in err
    code, _, err = _invoke("models", "download", "hf:test/none", "--offline", "--force")
    assert code == 2 and "needs the network" in err


def test_download_fan_calls_the_face_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import faceedit.face.detect as detect

    calls = []
    monkeypatch.setattr(detect, "fetch_fan_weights", lambda **kw: calls.append(kw) or [tmp_path / "s3fd.pth"])
    code, out, _ = _invoke("models", "download", "fan", "--json")
    assert code == 0 and len(calls) == 1 and json.loads(out)[0]["folder"] == str(tmp_path / "s3fd.pth")
    code, _, err = _invoke("models", "download", "fan", "--offline")
    assert code == 4 and len(calls) == 1 and "--offline" in err


def test_real_process_downloads_then_works_offline(fake_hub: FakeHub, hub_env: dict, ours: str) -> None:
    code, out, err, _ = _run("models", "download", "hf:test/ours", "--json", env=hub_env)
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["verified"] and Path(result["folder"]).name == ours and fake_hub.count("GET") == 2
    fake_hub.stop()
    fake_hub.clear_log()
    code, out, err, _ = _run("models", "download", "hf:test/ours", env={**hub_env, "HF_HUB_OFFLINE": "1"})
    assert code == 0 and out.strip().split("\t")[1] == result["folder"] and fake_hub.count() == 0
    code, out, err, _ = _run("models", "verify", env=hub_env)
    assert code == 0 and out.count("ok") == 2


def test_real_process_errors(fake_hub: FakeHub, hub_env: dict) -> None:
    code, out, err, seconds = _run("models", "download", "stargan-celeba-128", env=hub_env)
    assert code == 4 and out == ""  # the fake hub has no such repo: one 404, no retries
    assert "goodfellowliu/StarGAN-PyTorch not found" in err and "HF_ENDPOINT" in err
    assert fake_hub.count() == 1 and seconds < 10
    offline = {**hub_env, "HF_HUB_OFFLINE": "1"}
    code, out, err, seconds = _run("models", "download", "stargan-celeba-128", env=offline)
    assert code == 4 and "faceedit models download stargan-celeba-128" in err and "internet" in err
    assert fake_hub.count() == 1 and seconds < 10  # no request at all
    assert os.environ["HF_ENDPOINT"] == fake_hub.url  # the subprocess read it from its env, at call time
