"""The attcls-celeba-128 card: raw files from a (loopback) GitHub, pinned by git blob id, converted once,
offline from the cache, tampered downloads refused with exit 4."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faceedit import github_fetch, hub, models, registry, store
from faceedit.cli import app
from faceedit.errors import CheckpointError, ModelUnavailableError

CARD = "attcls-celeba-128"
FOLDER = "att_classification/checkpoints"


class RawGitHub:
    """Serves ``/{repo}/{ref}/{path}`` from a dict; records paths; ``flip`` corrupts one file's bytes."""

    def __init__(self, repo: str, files: dict[str, bytes]) -> None:
        self.repo, self.files, self.requests, self.flip = repo, files, [], None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                prefix = f"/{owner.repo}/HEAD/"
                data = owner.files.get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None
                if data is None:
                    self.send_error(404)
                    return
                if owner.flip == self.path.rsplit("/", 1)[-1]:
                    data = bytes([data[0] ^ 1]) + data[1:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def github(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RawGitHub]:
    """The tiny classifier published under the real card's paths; the card pinned to its blob ids."""
    tiny = fixtures_dir / "tf" / "attcls_tiny"
    names = ("128.ckpt.index", "128.ckpt.data-00000-of-00001")
    payload = {name: (tiny / name).read_bytes() for name in names}
    real = registry.get_card(CARD)
    files = tuple(
        dataclasses.replace(f, git_blob=_blob(payload[f.path]), size=len(payload[f.path]))
        for f in real.source.files
    )
    card = dataclasses.replace(real, source=dataclasses.replace(real.source, files=files))
    monkeypatch.setattr(store, "get_card", lambda name: card if name.strip().lower() == CARD else real)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("FACEEDIT_CACHE", str(tmp_path / "cache"))
    server = RawGitHub(real.source.repo_id, {f"{FOLDER}/{n}": data for n, data in payload.items()})
    monkeypatch.setenv(github_fetch.RAW_ENV, server.url)
    yield server
    server.close()


def _logits_match(folder: Path, fixtures_dir: Path) -> None:
    ref = np.load(fixtures_dir / "tf" / "attcls_tiny" / "ref.npz")
    model = models.load(folder)
    with torch.no_grad():
        got = model.classifier(torch.from_numpy(ref["x_nhwc"]).permute(0, 3, 1, 2)).numpy()
    assert np.abs(got - ref["logits"]).max() < 1e-5


def test_download_checks_blobs_converts_once_and_works_offline(
    github: RawGitHub, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = hub.resolve(CARD)
    assert resolved.verified and "git blob" in resolved.verification
    assert sorted(github.requests) == [
        f"/csmliu/STGAN/HEAD/{FOLDER}/128.ckpt.data-00000-of-00001",
        f"/csmliu/STGAN/HEAD/{FOLDER}/128.ckpt.index",
    ]
    _logits_match(resolved.folder, fixtures_dir)
    prov = models.read_config(resolved.folder)["provenance"]
    assert prov["card"] == CARD and prov["github_repo"] == "csmliu/STGAN" and len(prov["github_blobs"]) == 2
    checks = hub.verify(CARD)  # `faceedit models verify`: the converted folder, nothing "missing"
    assert checks and all(c.status == "ok" for c in checks)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = hub.resolve(CARD)
    assert again.folder == resolved.folder and not again.downloaded and len(github.requests) == 2
    result = CliRunner().invoke(app, ["models", "download", CARD, "--offline"])
    assert result.exit_code == 0, result.output
    assert len(github.requests) == 2


def test_raw_cache_is_rechecked_and_offline_without_cache_is_exit_4(
    github: RawGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(app, ["models", "download", CARD, "--offline"])
    assert result.exit_code == 4 and "offline" in result.output and not github.requests
    hub.resolve(CARD)
    card = hub.card_for(CARD)
    data = github_fetch.cache_path(card, card.source.files[1])
    raw = data.read_bytes()
    data.write_bytes(bytes([raw[0] ^ 0xFF]) + raw[1:])  # damaged on disk after download
    hub.resolve(CARD, force=True)  # rebuilt: the damaged raw file is fetched again
    assert github.requests.count(f"/csmliu/STGAN/HEAD/{FOLDER}/128.ckpt.data-00000-of-00001") == 2
    assert github_fetch.git_blob_id(data) == card.source.files[1].git_blob


def test_tampered_download_is_refused_and_nothing_is_kept(github: RawGitHub) -> None:
    github.flip = "128.ckpt.data-00000-of-00001"
    with pytest.raises(CheckpointError, match="git blob") as info:
        hub.resolve(CARD)
    assert "\n" not in str(info.value)
    card = hub.card_for(CARD)
    assert not github_fetch.cache_path(card, card.source.files[1]).exists()
    assert not (hub.converted_dir(CARD) / "model.safetensors").exists()
    result = CliRunner().invoke(app, ["models", "download", CARD])
    assert result.exit_code == 4 and "git blob" in result.output
    github.flip = None
    assert CliRunner().invoke(app, ["models", "download", CARD]).exit_code == 0


def test_missing_file_upstream_is_model_unavailable(github: RawGitHub) -> None:
    github.files.clear()
    with pytest.raises(ModelUnavailableError, match="HTTP 404"):
        hub.resolve(CARD)


def test_git_blob_id_is_gits(tmp_path: Path) -> None:
    path = tmp_path / "hello"
    path.write_bytes(b"hello\n")
    assert github_fetch.git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_eval_fetches_its_default_classifier(github: RawGitHub, tmp_path: Path) -> None:
    """`faceedit eval` without --classifier uses the attcls-celeba-128 card (here: the loopback GitHub)."""
    from tests._tiny import tiny_model
    from tests.synthdata import make_celeba

    root = make_celeba(tmp_path / "celeba", n=4, seed=1, partition=False)
    model = models.save(tiny_model("stgan"), tmp_path / "stgan")
    args = ["eval", f"local:{model}", "--data", str(root), "--split", "all", "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["classifier"] == CARD and doc["images"] == 4 and len(github.requests) == 2
    assert set(doc["models"][0]["attributes"]) == set(models.load(model).attributes)
    assert "celeba-178@32 -> celeba-tf@128" in doc["models"][0]["crop_mapping"]


def test_the_real_card_pins_every_file_by_blob_id() -> None:
    card = registry.get_card(CARD)
    assert card.source.kind == registry.GITHUB_RAW and card.arch == "attcls" and card.task == "classify"
    assert [f.path for f in card.source.files] == ["128.ckpt.index", "128.ckpt.data-00000-of-00001"]
    assert all(f.git_blob and len(f.git_blob) == 40 for f in card.source.files)
    assert card.source.files[0].size == 4524 and "MIT" in card.licences.code
