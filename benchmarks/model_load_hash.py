"""What checking a model folder costs at load: sha256 of model.safetensors and the finite-weights check.

Run from the repository root:  python benchmarks/model_load_hash.py [--rounds 5]
Saves a default-size AttGAN (generator + classifier, 285 MB) to a temp folder and times, page cache
warm (a model is loaded again and again), ``faceedit.models.load`` with its checks switched off (the
baseline, same run), with the finite check only (``verify=False``) and in full (sha256, then the
finite pass); also the hash alone. safetensors maps the file lazily: the baseline reads no weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _median(fn: Callable[[], object], rounds: int) -> tuple[float, float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def _folder(root: Path) -> Path:
    from faceedit import models, specs

    config = models.make_config(
        "attgan",
        {},
        attributes=list(specs.ATTGAN_ATTRIBUTES),
        image_size=128,
        template="celeba-170",
        resize="bilinear",
        conditioning={"scheme": "attgan", "thres_int": 0.5, "rules": "port"},
        classifier_kwargs={},
    )
    return models.save(models.build(config), root / "attgan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    from faceedit import models
    from faceedit.models import checks

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(Path(tmp))
        weights = folder / "model.safetensors"
        size = weights.stat().st_size / 1e6
        models.load(folder)  # warm the page cache
        finite = checks.check_finite

        def unchecked() -> None:
            checks.check_finite = lambda *a: None
            try:
                models.load(folder, verify=False)
            finally:
                checks.check_finite = finite

        cases = {
            "models.load, no checks (baseline)": unchecked,
            "models.load(verify=False): finite check": lambda: models.load(folder, verify=False),
            "models.load(): sha256 + finite check": lambda: models.load(folder),
            "sha256 alone": lambda: checks.file_sha256(weights),
        }
        print(f"{size:.0f} MB model.safetensors (AttGAN 128 + classifier), {args.rounds} rounds, warm cache")
        print("median (min-max), added cost = median - baseline")
        base = None
        for name, fn in cases.items():
            med, lo, hi = _median(fn, args.rounds)
            base = med if base is None else base
            spread = f"({lo * 1000:.0f}-{hi * 1000:.0f})"
            extra = (
                f"{size / med / 1000:.2f} GB/s"
                if name == "sha256 alone"
                else f"+{(med - base) * 1000:.0f} ms"
            )
            print(f"  {name:44s} {med * 1000:6.0f} ms {spread:12s} {extra}")


if __name__ == "__main__":
    main()
