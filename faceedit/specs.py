"""Per-architecture facts, defined once: attribute lists in training order, crop templates (5 points and
training crop box together), conditioning scheme and label layout of every official model.

Standard library only. Registry cards, importers, training export, the data loaders, face alignment and the
attribute encoding all read this table (tests/test_specs.py checks that they agree with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# --- vocabularies ---------------------------------------------------------------------------------------

# The 40 columns of CelebA's list_attr_celeba.txt, in file order.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# Default attribute lists of the official code bases, in their training order.
STARGAN_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")  # yunjey/stargan main.py
STGAN_PORT_ATTRIBUTES = (  # bluestyle97/STGAN-pytorch configs/train_stgan.yaml
    "Bangs", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Male", "Mouth_Slightly_Open",
    "Mustache", "Pale_Skin", "Young",
)  # fmt: skip
ATTGAN_ATTRIBUTES = (  # AttGAN (PyTorch port and TF) and the official TF STGAN
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Male",
    "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Young",
)  # fmt: skip

# RaFD's classes as torchvision's ImageFolder orders its folders (sorted names) = StarGAN's official c2 order.
RAFD_EXPRESSIONS: tuple[str, ...] = (
    "angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised",
)  # fmt: skip
# StarGAN's label layouts: CelebA attributes, RaFD expressions, or both with the 2-entry mask vector.
LABEL_LAYOUTS = ("celeba", "rafd", "both")

# --- crop templates -----------------------------------------------------------------------------------

# Mean 5 points of CelebA's aligned 178x218 frame (0-based pixel centres) and the 3 targets its MATLAB
# alignment (cp2tform, non-reflective similarity) mapped eyes and mouth centre to. face-pipeline.md §4.
CELEBA_FRAME = (178, 218)
CELEBA_POINTS5 = ((69.0, 111.0), (108.0, 111.0), (88.0, 136.0), (72.0, 152.0), (105.0, 152.0))
CELEBA_TARGETS3 = ((69.745, 111.0), (107.237, 111.0), (88.432, 152.514))
# facexlib's FFHQ 5-point template at 512 (GFPGAN/CodeFormer); used by `fit="points5"` for ffhq.
FFHQ_POINTS5_512 = (
    (192.98, 239.95), (318.90, 240.19), (256.63, 314.02), (201.26, 371.41), (313.09, 371.15),
)  # fmt: skip
# photo2cartoon framing measured on one face at 256 (face-pipeline.md §0/§5): approximate by nature.
SELFIE_POINTS5_256 = ((97.2, 117.0), (156.4, 116.6), (129.2, 149.6), (97.7, 168.1), (159.0, 166.8))


@dataclass(frozen=True)
class TemplateSpec:
    """A model's training framing: how a face lands in its square input.

    CelebA templates are a square ``crop`` of the aligned 178x218 photo at (``left``, ``top``) — the box the
    training code cut (``centred``: torchvision's CenterCrop, which gives those offsets on 178x218) — resized
    with ``resize``; their 5 points follow from CELEBA_POINTS5. Other templates give ``points5`` at ``frame``
    px; ``crop`` None means training resized the whole picture.
    """

    name: str
    description: str
    size: int  # default output size of `faceedit align`
    fit: str  # "celeba3" | "points5" | "ffhq-quad" (how face/align.py fits the points)
    border: str  # "replicate" | "reflect" | "constant"
    resize: str = "bilinear"  # how the training crop was resized ("bilinear" | "bicubic")
    crop: int | None = None
    top: int | None = None
    left: int | None = None
    centred: bool = False
    points5: tuple[tuple[float, float], ...] | None = None
    frame: int = 128


def _celeba(name: str, left: int, top: int, side: int, resize: str, centred: bool, text: str) -> TemplateSpec:
    return TemplateSpec(name, text, 128, "celeba3", "replicate", resize, side, top, left, centred)


TEMPLATES: Mapping[str, TemplateSpec] = MappingProxyType(
    {
        t.name: t
        for t in (
            _celeba(
                "celeba-178", 0, 20, 178, "bilinear", True,
                "CelebA aligned, centre 178 crop (StarGAN, STGAN port)",
            ),
            _celeba(
                "celeba-170", 4, 24, 170, "bilinear", True, "CelebA aligned, centre 170 crop (AttGAN-PyTorch)"
            ),
            _celeba(
                "celeba-tf", 3, 26, 170, "bicubic", False,
                "CelebA aligned, 170 crop at top 26, left 3, bicubic (TF AttGAN/STGAN)",
            ),
            TemplateSpec(
                "ffhq", "FFHQ / MyStyle quad (StyleGAN)", 1024, "ffhq-quad", "reflect",
                points5=FFHQ_POINTS5_512, frame=512,
            ),
            TemplateSpec(
                "selfie", "loose selfie (U-GAT-IT)", 256, "points5", "replicate",
                points5=SELFIE_POINTS5_256, frame=256,
            ),
        )
    }
)  # fmt: skip
TEMPLATE_ALIASES = MappingProxyType(
    {"stargan": "celeba-178", "attgan": "celeba-170", "stgan": "celeba-tf", "ugatit": "selfie"}
)

# --- per-architecture facts -----------------------------------------------------------------------------

ARCHS = ("stargan", "attgan", "stgan", "ugatit")
VARIANTS = ("port", "tf")


@dataclass(frozen=True)
class ArchSpec:
    """What an official ``arch`` model was trained with (``variant``: the PyTorch port or the TF original)."""

    arch: str
    variant: str
    attributes: tuple[str, ...]  # in training order (the generator's label order)
    template: str
    scheme: str  # conditioning scheme: "stargan" | "attgan" | "stgan" | "none"
    image_size: int = 128
    labels: str = "celeba"  # label layout: "celeba" | "rafd" | "both" (StarGAN) | "none"
    expressions: tuple[str, ...] = ()  # RaFD expressions in label order (after the attributes)

    @property
    def resize(self) -> str:
        return TEMPLATES[self.template].resize

    def conditioning(self, thres_int: float = 0.5) -> dict[str, Any]:
        """The ``conditioning`` block of config.json."""
        block: dict[str, Any] = {"scheme": self.scheme, "thres_int": float(thres_int), "rules": self.variant}
        if self.expressions:
            block.update(dataset=self.labels, expressions=list(self.expressions))
        return block


SPECS: Mapping[tuple[str, str], ArchSpec] = MappingProxyType(
    {
        (s.arch, s.variant): s
        for s in (
            ArchSpec("stargan", "port", STARGAN_ATTRIBUTES, "celeba-178", "stargan"),
            ArchSpec("attgan", "port", ATTGAN_ATTRIBUTES, "celeba-170", "attgan"),
            ArchSpec("attgan", "tf", ATTGAN_ATTRIBUTES, "celeba-tf", "attgan"),
            ArchSpec("stgan", "port", STGAN_PORT_ATTRIBUTES, "celeba-178", "stgan"),
            ArchSpec("stgan", "tf", ATTGAN_ATTRIBUTES, "celeba-tf", "stgan"),
            ArchSpec("ugatit", "port", (), "selfie", "none", 256, "none"),
            ArchSpec("ugatit", "tf", (), "selfie", "none", 256, "none"),
        )
    }
)


# StarGAN trained on RaFD alone or on CelebA + RaFD (yunjey/stargan main.py --dataset RaFD | Both).
STARGAN_DATASETS: Mapping[str, ArchSpec] = MappingProxyType(
    {
        "celeba": SPECS[("stargan", "port")],
        "rafd": ArchSpec("stargan", "port", (), "celeba-178", "stargan", 128, "rafd", RAFD_EXPRESSIONS),
        "both": ArchSpec(
            "stargan", "port", STARGAN_ATTRIBUTES, "celeba-178", "stargan", 128, "both", RAFD_EXPRESSIONS
        ),
    }
)


def arch_spec(arch: str, variant: str = "port", labels: str | None = None) -> ArchSpec:
    """The facts of the official ``arch`` model (``labels``: StarGAN's dataset); ValueError if unknown."""
    try:
        if arch == "stargan" and labels not in (None, "celeba"):
            return STARGAN_DATASETS[labels]
        return SPECS[(arch, variant)]
    except KeyError:
        raise ValueError(
            f"no official facts for arch={arch!r} variant={variant!r} labels={labels!r}"
        ) from None
