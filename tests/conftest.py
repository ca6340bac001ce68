"""Test-session setup: isolated caches, no accidental network, and access to ../shared fixtures.

The reference fixtures (official-format checkpoints and their outputs) live in ``../shared`` next to
the checkout and are read from there at test time, never copied in. Tests that need them skip with a
clear reason when the folder is absent (a user's clone); ``.ci/run`` sets FACEEDIT_REQUIRE_SHARED=1 so
that in CI its absence fails instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Caches and hub settings must be fixed before huggingface_hub is first imported (it reads env at import).
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="faceedit-tests-"))
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
os.environ.pop("HF_HUB_CACHE", None)
os.environ["TORCH_HOME"] = str(_SESSION_HOME / "torch")
os.environ["FACEEDIT_CACHE"] = str(_SESSION_HOME / "faceedit")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_ETAG_TIMEOUT"] = "2"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests that talk to the local fake hub switch it off
os.environ["FACEEDIT_NO_PROGRESS"] = "1"


def _shared_root() -> Path | None:
    candidates = [os.environ.get("FACEEDIT_SHARED"), REPO.parent / "shared", REPO / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "fixtures").is_dir():
            return Path(candidate)
    return None


SHARED = _shared_root()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` folder (``design.md``, ``reference/``, ``fixtures/``) next to the checkout."""
    if SHARED is None:
        reason = (
            "reference fixtures not found: expected ../shared/fixtures next to the checkout "
            "(or set FACEEDIT_SHARED=/path/to/shared)"
        )
        if os.environ.get("FACEEDIT_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " — FACEEDIT_REQUIRE_SHARED=1 makes this an error", pytrace=False)
        pytest.skip(reason)
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    """``../shared/fixtures`` (official-format checkpoints and reference outputs)."""
    return shared_dir / "fixtures"


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    # Deterministic, contention-free CPU math in every test (2-core CI machine).
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(2)


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    """scikit-image's ``astronaut.png`` (512x512 RGB, one frontal face), shipped inside its wheel."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / "astronaut.png"
    if not path.exists():  # pragma: no cover - depends on the installed scikit-image
        pytest.fail(f"scikit-image does not ship {path}; install the test extras", pytrace=False)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests run only where CUDA exists (they are exercised on the lent GPU machine)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on a GPU machine; see benchmarks/RESULTS.md)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------ shared by the pipeline and worker-process tests


@pytest.fixture(scope="module")
def astronaut_faces(astronaut_path: Path) -> list:
    """The astronaut's faces, found once (tests hand them to a fixed stand-in detector)."""
    from faceedit import images
    from faceedit.face import detect

    return detect.detect(images.read(astronaut_path).rgb)


@pytest.fixture(scope="module")
def engine():
    """A tiny random StarGAN on the CPU, one torch thread."""
    import torch

    from faceedit import runtime
    from tests._tiny import tiny_model

    torch.set_num_threads(1)
    return runtime.Engine(tiny_model("stargan"), "cpu", "fp32")


def photo_folder(astronaut_path: Path, tmp_path: Path, n: int) -> Path:
    """``n`` copies of the astronaut with a corrupt PNG as ``p3.png`` in the middle."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(n):
        shutil.copy(astronaut_path, photos / f"p{i}.png")
    (photos / "p3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return photos
