"""Model cards: one literal table of every model faceedit knows, and where its weights come from.

Standard library only, so ``faceedit models list`` and ``--help`` never import torch. A card holds what
is needed to rebuild and trust a checkpoint; :mod:`faceedit.hub` turns a card into a local model folder.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from faceedit import specs
from faceedit.card import (  # noqa: F401 (re-exported: the card types were defined here)
    CELEBA_NONCOMMERCIAL,
    GITHUB_RAW,
    HUB_FACEEDIT,
    HUB_TF,
    HUB_UPSTREAM,
    IMPORT_ONLY,
    SOURCE_KINDS,
    TASKS,
    Licences,
    ModelCard,
    ModelSource,
    SourceFile,
)

_STARGAN_LICENCES = Licences(
    code="MIT (yunjey/stargan); Apache-2.0 (Lornatang/StarGAN-PyTorch, which converted the files)",
    weights="Apache-2.0 per the hub repo's licence tag; the weights are yunjey/stargan's released CelebA "
    "models, so CelebA's terms apply to any use of them",
    dataset=CELEBA_NONCOMMERCIAL,
)
_STARGAN_HUB = "goodfellowliu/StarGAN-PyTorch"
_STARGAN_IMPORT = (
    "The same weights are published by yunjey/stargan (`bash download.sh pretrained-celeba-{res}x{res}`, "
    "a Dropbox zip): `faceedit models import stargan stargan_celeba_{res}/models/200000-G.ckpt "
    "--out DIR` gives the same model folder."
)
# The two AttGAN-PyTorch cards (default and inject1) share their terms; the TF card its paper.
_ATTGAN_PORT_LICENCES = Licences(
    code="MIT (elvisyjlin/AttGAN-PyTorch)",
    weights="no separate licence stated; released with the MIT code, trained on CelebA",
    dataset=CELEBA_NONCOMMERCIAL,
)
_ATTGAN_PAPER = "He et al., AttGAN, IEEE TIP 2019 (arXiv:1711.10678)"
_ATTGAN_PORT_KWARGS = {
    "enc_dim": 64, "enc_layers": 5, "dec_dim": 64, "dec_layers": 5, "n_attrs": 13,
    "shortcut_layers": 1, "inject_layers": 0, "img_size": 128, "lrelu_slope": 0.01, "bn_eps": 1e-5,
}  # fmt: skip


def _facts(arch: str, variant: str, labels: str | None = None) -> dict[str, Any]:
    """A card's training facts, read from the one table (:mod:`faceedit.specs`)."""
    spec = specs.arch_spec(arch, variant, labels)
    return {
        "attributes": spec.attributes,
        "template": spec.template,
        "resize": spec.resize,
        "conditioning": spec.conditioning(),
    }


def _stargan(res: int, download_mb: float, notes: str) -> ModelCard:
    return ModelCard(
        name=f"stargan-celeba-{res}",
        task="edit",
        arch="stargan",
        variant="port",
        generator_kwargs={"conv_dim": 64, "c_dim": 5, "repeat_num": 6},
        **_facts("stargan", "port"),
        image_size=res,
        classifier=True,
        source=ModelSource(
            kind=HUB_UPSTREAM,
            repo_id=_STARGAN_HUB,
            revision=None,  # hub page shows commit d4c9618; the full hash is not known yet
            files=(
                SourceFile(f"g_celeba-{res}x{res}.pth.tar", "generator"),
                SourceFile(f"d_celeba-{res}x{res}.pth.tar", "discriminator"),
            ),
            download_mb=download_mb,  # 33.8 MB generator + 179/180 MB discriminator (hub file list)
            url=f"https://huggingface.co/{_STARGAN_HUB}",
            instructions=_STARGAN_IMPORT.format(res=res),
        ),
        licences=_STARGAN_LICENCES,
        upstream="https://github.com/yunjey/stargan",
        paper="Choi et al., StarGAN, CVPR 2018 (arXiv:1711.09020)",
        notes=notes,
    )


_RAFD_TERMS = (
    "RaFD (Radboud University): research use after signing its licence agreement, which forbids "
    "redistributing the images and anything that reproduces them; no RaFD-trained weights are published"
)
_NO_WEIGHTS = (
    "No official or third-party {what} weights are published (RaFD's licence forbids redistribution). "
    "Train one: `faceedit train stargan --config recipes/{recipe}.toml {data} --out runs/{name}` "
    "(the run's release/ folder is the model: `--model local:runs/{name}/release`), or convert your own "
    "official run: `faceedit models import stargan stargan_{folder}/models/200000-G.ckpt --dataset {dataset} "
    "--out DIR` (the -D.ckpt beside it gives the expression classifier)."
)

_RAFD_NOTES = (
    "Edits expressions: `faceedit edit photo.jpg --expression happy` (angry, contemptuous, disgusted, "
    "fearful, happy, neutral, sad, surprised); the photo's own expression is the softmax of D's RaFD head."
)
_BOTH_NOTE = (
    " Also --add/--remove for its 5 CelebA attributes, in another run: the mask vector marks either the "
    "CelebA or the RaFD labels valid (the paper's multi-dataset model)."
)


def _stargan_rafd(dataset: str) -> ModelCard:
    both = dataset == "both"
    name = "stargan-celeba-rafd-128" if both else "stargan-rafd-128"
    return ModelCard(
        name=name,
        task="edit",
        arch="stargan",
        variant="port",
        generator_kwargs={"conv_dim": 64, "c_dim": 5 if both else 0, "repeat_num": 6, "c2_dim": 8},
        **_facts("stargan", "port", dataset),
        image_size=128,
        classifier=True,
        source=ModelSource(
            kind=IMPORT_ONLY,
            url="https://github.com/yunjey/stargan (main.py --dataset " + ("Both)" if both else "RaFD)"),
            instructions=_NO_WEIGHTS.format(
                what="CelebA + RaFD" if both else "RaFD",
                recipe=name,
                data="--data CELEBA_DIR --rafd RAFD_DIR" if both else "--data RAFD_DIR",
                name=name,
                folder="both" if both else "rafd",
                dataset=dataset,
            ),
        ),
        licences=Licences(
            code="MIT (yunjey/stargan)",
            weights="none published; weights you train inherit the training data's terms",
            dataset=f"{CELEBA_NONCOMMERCIAL}; {_RAFD_TERMS}" if both else _RAFD_TERMS,
        ),
        upstream="https://github.com/yunjey/stargan",
        paper="Choi et al., StarGAN, CVPR 2018 (arXiv:1711.09020)",
        notes=_RAFD_NOTES + (_BOTH_NOTE if both else " RaFD's 8 expressions only (no CelebA attributes)."),
    )


CARDS: tuple[ModelCard, ...] = (
    _stargan(
        128,
        212.8,
        "Default editor. The official CelebA model (200k iterations, 5 attributes; hair colours are "
        "exclusive). Generator and discriminator are fetched: the discriminator's classification head "
        "estimates the photo's own attributes. Hub commit d4c9618 (short hash).",
    ),
    _stargan(
        256,
        213.8,
        "The official 256x256 CelebA model; known to be blurrier and weaker than the 128 model "
        "(yunjey/stargan#113). Hub commit d4c9618 (short hash).",
    ),
    ModelCard(
        name="ugatit-selfie2anime-256",
        task="anime",
        arch="ugatit",
        variant="tf",
        generator_kwargs={
            "input_nc": 3,
            "output_nc": 3,
            "ngf": 64,
            "n_blocks": 4,
            "img_size": 256,
            "light": False,
            # the TF original's numerics (tf-import.md 3.3): biases, affine IN, biased variance
            "conv_bias": True,
            "in_affine": True,
            "unbiased_var": False,
            "cam_bias": True,
            "mlp_bias": True,
        },
        **_facts("ugatit", "tf"),
        image_size=256,
        direction="A2B",
        source=ModelSource(
            kind=HUB_TF,
            repo_id="hylee/UGATIT_model",
            revision=None,
            folder="UGATIT_selfie2anime_lsgan_4resblock_6dis_1_1_10_10_1000_sn_smoothing",
            files=(
                SourceFile("UGATIT.model-1000000.index", "checkpoint-index"),
                # 8,049,363,696 bytes predicted from the code, not read off the hub: kept out of `size`.
                SourceFile("UGATIT.model-1000000.data-00000-of-00001", "checkpoint-data"),
            ),
            download_mb=1116.0,  # generator_B only: 1,115,881,232 bytes (tf-import.md 2)
            url="https://huggingface.co/hylee/UGATIT_model",
        ),
        licences=Licences(
            code="MIT (taki0112/UGATIT, the TensorFlow code the checkpoint was trained with)",
            weights="no licence stated with the checkpoint (released by the authors through the "
            "taki0112/UGATIT README; mirrored on the hub by hylee)",
            dataset="selfie2anime (the authors' selfie and anime face collections): no licence stated; "
            "treat as research use only",
        ),
        upstream="https://github.com/taki0112/UGATIT",
        paper="Kim et al., U-GAT-IT, ICLR 2020 (arXiv:1907.10830)",
        notes=(
            "Default for `faceedit anime`. Only generator_B (selfie->anime) is fetched, by HTTP Range: "
            "about 1.1 GB of the ~8 GB TF checkpoint (the rest is discriminators and Adam slots), "
            "checked tensor by tensor with TF's crc32c, converted once and cached. The folder name's "
            "`_smoothing` means rho is shifted by -0.1 on import."
        ),
        extra={"smoothing": True},
    ),
    ModelCard(
        name="attgan-celeba-128",
        task="edit",
        arch="attgan",
        variant="port",
        generator_kwargs=_ATTGAN_PORT_KWARGS,
        **_facts("attgan", "port"),
        image_size=128,
        source=ModelSource(
            kind=IMPORT_ONLY,
            url="https://github.com/elvisyjlin/AttGAN-PyTorch (README: Google Drive folder)",
            instructions=(
                "Download the folder `128_shortcut1_inject0_none` (setting.txt + checkpoint/weights.49.pth) "
                "from the Google Drive link in the elvisyjlin/AttGAN-PyTorch README, then run "
                "`faceedit models import attgan 128_shortcut1_inject0_none --out ~/faceedit-models/"
                "attgan-celeba-128` and use `--model local:~/faceedit-models/attgan-celeba-128`. The other "
                "released folders (256/384, _hq) import the same way; their settings come from setting.txt."
            ),
        ),
        licences=_ATTGAN_PORT_LICENCES,
        upstream="https://github.com/elvisyjlin/AttGAN-PyTorch",
        paper=_ATTGAN_PAPER,
        notes="Generator only is released (no discriminator, so no attribute classifier): pass --source. "
        "49 epochs of training.",
    ),
    ModelCard(
        name="attgan-celeba-128-inject1",
        task="edit",
        arch="attgan",
        variant="port",
        generator_kwargs={**_ATTGAN_PORT_KWARGS, "inject_layers": 1},
        **_facts("attgan", "port"),
        image_size=128,
        source=ModelSource(
            kind=IMPORT_ONLY,
            url="https://github.com/elvisyjlin/AttGAN-PyTorch (README: Google Drive folder)",
            instructions=(
                "Download the folder `128_shortcut1_inject1_none` from the Google Drive link in the "
                "elvisyjlin/AttGAN-PyTorch README, then `faceedit models import attgan "
                "128_shortcut1_inject1_none --out DIR` and use `--model local:DIR`."
            ),
        ),
        licences=_ATTGAN_PORT_LICENCES,
        upstream="https://github.com/elvisyjlin/AttGAN-PyTorch",
        paper=_ATTGAN_PAPER,
        notes="Like attgan-celeba-128 with the attributes also injected after the first decoder layer.",
    ),
    ModelCard(
        name="attgan-celeba-128-tf",
        task="edit",
        arch="attgan",
        variant="tf",
        generator_kwargs={**_ATTGAN_PORT_KWARGS, "inject_layers": 1, "lrelu_slope": 0.2, "bn_eps": 1e-3},
        **_facts("attgan", "tf"),
        image_size=128,
        source=ModelSource(
            kind=IMPORT_ONLY,
            url="https://github.com/LynnHo/AttGAN-Tensorflow (v1 code, commit 4b00e6c; README)",
            instructions=(
                "Download the official TensorFlow model `128_shortcut1_inject1_none` linked from the "
                "LynnHo/AttGAN-Tensorflow README (v1), then `faceedit models import attgan "
                "128_shortcut1_inject1_none/checkpoints --out DIR` (TensorFlow is not needed) and use "
                "`--model local:DIR`."
            ),
        ),
        licences=Licences(
            code="MIT (LynnHo/AttGAN-Tensorflow)",
            weights="no separate licence stated; released with the code, trained on CelebA",
            dataset=CELEBA_NONCOMMERCIAL,
        ),
        upstream="https://github.com/LynnHo/AttGAN-Tensorflow",
        paper=_ATTGAN_PAPER,
        notes="The paper's own model: LeakyReLU 0.2, BatchNorm eps 1e-3, the (26, 3) 170x170 crop resized "
        "bicubically. Generator only: pass --source.",
    ),
    ModelCard(
        name="stgan-celeba-128-tf",
        task="edit",
        arch="stgan",
        variant="tf",
        generator_kwargs={
            "attr_dim": 13,
            "conv_dim": 64,
            "n_layers": 5,
            "shortcut_layers": 4,
            "inject_layers": 4,
            "stu_norm": False,
            "stu_bias": True,
            "one_more_conv": 0,
            "bn_eps": 1e-3,
            "max_dim": 1024,
            "stu_kernel_size": 3,
        },
        **_facts("stgan", "tf"),
        image_size=128,
        source=ModelSource(
            kind=IMPORT_ONLY,
            url="https://github.com/csmliu/STGAN (README: pretrained 128 model)",
            instructions=(
                "Download the pretrained STGAN model linked from the csmliu/STGAN README and unzip it, "
                "then `faceedit models import stgan <unzipped folder>/checkpoints --out DIR` (TensorFlow "
                "is not needed) and use `--model local:DIR`."
            ),
        ),
        licences=Licences(
            code="MIT (csmliu/STGAN)",
            weights="no separate licence stated; released with the code, trained on CelebA",
            dataset=CELEBA_NONCOMMERCIAL,
        ),
        upstream="https://github.com/csmliu/STGAN",
        paper="Liu et al., STGAN, CVPR 2019 (arXiv:1904.09709)",
        notes="Edits by attribute difference, so the photo's own attributes matter less than for AttGAN. "
        "Generator only: pass --source for best results.",
    ),
)

CARDS += (
    ModelCard(
        name="attcls-celeba-128",
        task="classify",
        arch="attcls",
        variant="tf",
        generator_kwargs={},
        attributes=specs.CELEBA_ATTRIBUTES,
        image_size=128,
        template="celeba-tf",
        resize="bicubic",
        conditioning={"scheme": "none", "thres_int": 0.5, "rules": "tf"},
        classifier=True,
        source=ModelSource(
            kind=GITHUB_RAW,
            repo_id="csmliu/STGAN",
            folder="att_classification/checkpoints",
            files=(
                SourceFile(
                    "128.ckpt.index",
                    "checkpoint-index",
                    size=4524,
                    git_blob="11ca6eff8d9c2870b6cd91330aec42b4d824050d",
                ),
                # ~39.6 MB predicted from the index (weights + 2 Adam slots), not measured: kept out of size.
                SourceFile(
                    "128.ckpt.data-00000-of-00001",
                    "checkpoint-data",
                    git_blob="7c54ea492610fd3376a4905ec2cbd22d07e4d7cd",
                ),
            ),
            download_mb=39.6,
            url="https://github.com/csmliu/STGAN/tree/master/att_classification",
        ),
        licences=Licences(
            code="MIT (csmliu/STGAN; the classifier code is LynnHo/AttGAN-Tensorflow's, MIT)",
            weights="no separate licence stated; committed to the MIT-licensed csmliu/STGAN repository",
            dataset=CELEBA_NONCOMMERCIAL,
        ),
        upstream="https://github.com/csmliu/STGAN",
        paper="Liu et al., STGAN, CVPR 2019 (arXiv:1904.09709): the attribute classifier of its evaluation",
        notes="Not an editor: the CelebA attribute classifier (40 outputs, 94.5 % mean accuracy on the 13 "
        "edited attributes) that `faceedit eval` uses to score editing, as in the STGAN paper. Fetched from "
        "GitHub and checked against the files' git blob ids; Adam slots are dropped on import.",
    ),
)
CARDS += (_stargan_rafd("rafd"), _stargan_rafd("both"))

# The card each task uses when no --model is given.
DEFAULTS: Mapping[str, str] = MappingProxyType(
    {"edit": "stargan-celeba-128", "anime": "ugatit-selfie2anime-256"}
)


class UnknownModelError(LookupError):
    """A model name that is not in the table; carries a hint (close match, known names)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message} ({hint})")
        self.message = message
        self.hint = hint


_BY_NAME: Mapping[str, ModelCard] = MappingProxyType({card.name: card for card in CARDS})


def list_cards(task: str | None = None) -> list[ModelCard]:
    """Every card in table order, optionally only those of one task."""
    return [card for card in CARDS if task is None or card.task == task]


def get_card(name: str) -> ModelCard:
    """The card called ``name`` (case-insensitive); :class:`UnknownModelError` names the known ones."""
    key = name.strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    close = difflib.get_close_matches(key, list(_BY_NAME), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    hint += "known models: " + ", ".join(_BY_NAME) + " (or hf:ORG/REPO[@REV], local:DIR)"
    raise UnknownModelError(f"unknown model {name!r}", hint)


def default_card(task: str) -> ModelCard:
    """The card a task uses when no --model is given."""
    return _BY_NAME[DEFAULTS[task]]
