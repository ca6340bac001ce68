"""Speed of `faceedit eval` (the STGAN paper's protocol) vs one generator pass over the same images.

Run: ``python benchmarks/eval_speed.py [--models stargan,attgan,stgan] [--images 8] [--batch 8]
[--device cpu] [--threads 2]``. Default-size generators at 128 px and the full-width attcls classifier,
random weights (nothing downloaded), on synthetic 178x218 "aligned" JPEGs. Per model: seconds per
image of the whole protocol (decode + crop, reconstruction, one edit per attribute, the classifier on
every edit, PSNR/SSIM) and of a single generator pass measured in the same run; their ratio is close to
the number of generator passes (attributes + 1) when the generator dominates. ``CPU share``: process CPU
time / (wall time x threads) during the eval; well below 100 % means other jobs had the cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

MODELS = {  # name -> (arch, generator kwargs, attributes, template, variant)
    "stargan": (
        "stargan",
        {},
        ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"),
        "celeba-178",
        "port",
    ),
    "attgan": ("attgan", {"inject_layers": 1}, None, "celeba-170", "port"),
    "stgan": ("stgan", {"attr_dim": 13, "inject_layers": 4, "shortcut_layers": 4}, None, "celeba-tf", "tf"),
}


def synthetic_celeba(root: Path, n: int) -> Path:
    """``n`` random 178x218 JPEGs with a CelebA attribute file (every attribute random ±1)."""
    from PIL import Image

    from faceedit.attributes import CELEBA_ATTRIBUTES

    rng = np.random.default_rng(0)
    (root / "img_align_celeba").mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=95)
        rows.append(name + " " + " ".join(str(v) for v in rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))))
    text = f"{n}\n{' '.join(CELEBA_ATTRIBUTES)}\n" + "\n".join(rows) + "\n"
    (root / "list_attr_celeba.txt").write_text(text)
    return root


def editor(name: str) -> object:
    from faceedit import attributes, models

    arch, kwargs, attrs, template, variant = MODELS[name]
    attrs = list(attrs or attributes.ATTGAN_ATTRIBUTES)
    config = models.make_config(
        arch,
        kwargs,
        attributes=attrs,
        image_size=128,
        template=template,
        resize="bilinear",
        conditioning=attributes.default_conditioning(arch, variant),
        variant=variant,
    )
    return models.build(config)


def classifier() -> object:
    from faceedit import models
    from faceedit.classifier import attcls_config

    return models.build(attcls_config({"dim": 32}))


def measure(name: str, root: Path, args: argparse.Namespace) -> None:
    from faceedit import attributes, evaluation, images
    from faceedit.data import TEMPLATES, load_image
    from faceedit.data.celeba import read_index
    from faceedit.runtime import Engine

    model = editor(name)
    engine = Engine(model, args.device, "fp32")
    judge = Engine(classifier(), args.device, "fp32", optimise=False)
    opts = evaluation.Options(split="all", batch_size=args.batch)
    scorer = evaluation.Scorer(engine, judge, name, opts)
    index = read_index(root, scorer.names, split="all")
    rows = evaluation.eval_rows(index, "all", None)
    crops = [
        load_image(root / "img_align_celeba" / n, TEMPLATES[model.config["template"]], 128)
        for n in index.names
    ]
    cond = attributes.encode(
        model.config["conditioning"], scorer.names, index.labels.astype(float), attributes.EditSpec()
    )
    engine.generate(images.to_tensor(crops[: args.batch]), cond[: args.batch], args.batch)  # warm-up
    start = time.perf_counter()
    engine.generate(images.to_tensor(crops), cond, args.batch)
    one_pass = (time.perf_counter() - start) / len(crops)
    start, cpu = time.perf_counter(), time.process_time()
    evaluation.evaluate(scorer, index, rows)
    full = (time.perf_counter() - start) / len(rows)
    share = (time.process_time() - cpu) / (full * len(rows)) / args.threads  # < 1: other jobs took the CPU
    passes = len(scorer.names) + 1
    print(
        f"{name:8s} {len(scorer.names):2d} attrs  eval {full:6.3f} s/image ({1 / full:5.2f} images/s)  "
        f"one generator pass {one_pass:6.3f} s/image  ratio {full / one_pass:5.1f}x "
        f"(generator passes per image: {passes})  CPU share {share:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="stargan,attgan,stgan")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    print(f"eval speed, {when} UTC, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"device {args.device}, {args.images} images, batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_celeba(Path(tmp) / "celeba", args.images)
        for name in args.models.split(","):
            measure(name.strip(), root, args)


if __name__ == "__main__":
    main()
