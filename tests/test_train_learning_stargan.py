"""StarGAN's multi-dataset training learns, not just runs: a tiny model trained on CPU with
``--dataset both`` for 400 steps (about a minute of one core) on synthetic CelebA faces (no expression)
and synthetic RaFD faces (the expression drawn as a coloured mouth band) paints the requested
expression's band on held-out faces of both datasets, as judged by a rule-based reading of the pixels,
and its classifier's RaFD head names the expression of held-out RaFD faces. Real faces carry no band,
so an untrained or identity generator scores 0%."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceedit import attributes, expressions, models
from faceedit.data import TEMPLATES, ImageSource, celeba, open_images, rafd
from faceedit.training import config, loop
from tests.synthdata import HEIGHT, RAFD_EXPRESSIONS, WIDTH, make_celeba, make_rafd, read_expression

ATTRS = ("Blond_Hair", "Eyeglasses")


def _batch(source: ImageSource) -> torch.Tensor:
    x = torch.stack([torch.from_numpy(np.array(source[i])).permute(2, 0, 1) for i in range(len(source))])
    return x.float() / 127.5 - 1


def _read(images: torch.Tensor) -> list[str | None]:
    top = TEMPLATES["celeba-178"].box(WIDTH, HEIGHT)[1]
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [read_expression(p, top, 178) for p in pixels]


@pytest.mark.slow
def test_both_datasets_model_learns_to_draw_the_expression(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    faces, marked = (
        make_celeba(tmp_path / "celeba", n=160, seed=1),
        make_rafd(tmp_path / "rafd", n_per=20, seed=2),
    )
    overrides = {
        "data": str(faces), "rafd": str(marked), "dataset": "both", "attrs": ",".join(ATTRS), "steps": 400,
        "batch_size": 8, "image_size": 32, "split": "celeba", "rafd_crop": 178, "lr_g": 5e-4, "lr_d": 5e-4,
        "g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 2, "d_repeat_num": 3, "n_critic": 1,
        "log_every": 100, "sample_every": 0, "checkpoint_every": 0, "workers": 0, "device": "cpu", "seed": 0,
    }  # fmt: skip
    model = models.load(loop.fit(config.load("stargan", overrides=overrides), tmp_path / "run"))

    index = celeba.read_index(faces, ATTRS, "celeba")
    rows = celeba.split_rows(index, "stargan", "celeba")["test"]  # CelebA faces never seen in training
    x_celeba = _batch(
        open_images(faces, celeba.IMAGE_DIR, [index.names[r] for r in rows], TEMPLATES["celeba-178"], 32)
    )
    held = rafd.read_index(make_rafd(tmp_path / "held", n_per=2, seed=9))  # new RaFD faces
    x_rafd = _batch(ImageSource(held.root, held.names, rafd.template(178), 32))
    assert _read(x_celeba) == [None] * len(rows)  # the rule sees no band on CelebA faces...
    assert _read(x_rafd) == [RAFD_EXPRESSIONS[k] for k in held.labels]  # ...and reads RaFD's right

    with torch.no_grad():
        logits = model.classifier(x_rafd).numpy()
    estimate = expressions.estimate(model.config, logits)[:, len(ATTRS) :]
    assert (estimate.argmax(1) == held.labels).mean() >= 0.9  # the RaFD head names the expression

    c_src = np.concatenate([index.labels[rows], np.zeros((len(rows), 8), np.float32)], axis=1)
    r_src = np.concatenate([np.zeros((len(held.labels), len(ATTRS)), np.float32), np.eye(8)[held.labels]], 1)
    x, source = torch.cat([x_celeba, x_rafd]), np.concatenate([c_src, r_src]).astype(np.float32)
    scores = {}
    for k, name in enumerate(RAFD_EXPRESSIONS):
        c = expressions.encode(model.config, source, attributes.EditSpec(expression=name))
        with torch.no_grad():
            seen = _read(model.generator(x, torch.from_numpy(c)))
        changed = np.r_[np.ones(len(rows), bool), held.labels != k]  # faces that did not show it already
        scores[name] = np.mean([s == name for s, c_ in zip(seen, changed, strict=True) if c_])
    assert scores["happy"] >= 0.8, scores
    assert sum(v >= 0.8 for v in scores.values()) >= 5, (
        scores
    )  # seen: happy/angry/sad/neutral 100 %, surprised 0 %

    # An attribute edit (mask [1, 0], zero RaFD part) leaves CelebA faces without a band.
    c = expressions.encode(model.config, c_src, attributes.EditSpec(toggle=("Blond_Hair",)))
    with torch.no_grad():
        assert np.mean([s is None for s in _read(model.generator(x_celeba, torch.from_numpy(c)))]) >= 0.8
