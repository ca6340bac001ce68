"""Every shipped model card is valid: names, architecture, attributes, pins, licences, card text, kwargs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from faceedit import registry

REPO = Path(__file__).resolve().parents[1]
# The 40 columns of CelebA's list_attr_celeba.txt, written out here independently of attributes.py.
CELEBA_40 = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

CARDS = registry.list_cards()
ids = [card.name for card in CARDS]


def test_names_unique_kebab_and_defaults_exist() -> None:
    assert len(CELEBA_40) == 40
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", name) for name in ids)
    for task, name in registry.DEFAULTS.items():
        card = registry.get_card(name)
        assert card.task == task and not card.import_only
    assert {card.task for card in CARDS} <= set(registry.TASKS)


@pytest.mark.parametrize("card", CARDS, ids=ids)
def test_card_fields(card: registry.ModelCard) -> None:
    from faceedit.models import ARCHS

    assert card.arch in ARCHS
    assert set(card.attributes) <= set(CELEBA_40), set(card.attributes) - set(CELEBA_40)
    assert len(set(card.attributes)) == len(card.attributes)
    rafd_only = card.conditioning.get("dataset") == "rafd"  # StarGAN on RaFD: expressions, no attributes
    assert (card.arch == "ugatit" or rafd_only) == (not card.attributes)
    if "rafd" in card.name:
        assert (
            "RaFD" in card.licences.dataset
            and "no RaFD-trained weights are published" in card.licences.dataset
        )
        assert (
            "faceedit train stargan" in card.source.instructions and "--dataset" in card.source.instructions
        )
    src = card.source
    assert src.kind in registry.SOURCE_KINDS
    assert src.revision is None or re.fullmatch(r"[0-9a-f]{40}", src.revision)
    for f in src.files:
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        assert f.size is None or f.size > 0
    if card.import_only:
        assert src.instructions and "faceedit models import" in src.instructions
    else:
        assert src.repo_id and re.fullmatch(r"[\w.-]+/[\w.-]+", src.repo_id) and src.files
    for text in (card.licences.code, card.licences.weights, card.licences.dataset, card.upstream, card.paper):
        assert text.strip()
    if "celeba" in card.name:
        assert "non-commercial" in card.licences.dataset
    readme = REPO / "weights" / card.name / "README.md"
    assert readme.is_file(), f"missing model-card text {readme}"
    assert card.name in readme.read_text() and "licen" in readme.read_text().lower()


@pytest.mark.parametrize("card", CARDS, ids=ids)
def test_card_builds_a_valid_config_and_generator_on_meta(card: registry.ModelCard) -> None:
    """The card's kwargs are accepted by the real classes (meta device: no memory, no init cost)."""
    from faceedit import models
    from faceedit.models import folder

    fields = card.config_fields()
    config = models.make_config(
        fields.pop("arch"), fields.pop("generator_kwargs"), **fields, provenance={"card": card.name}
    )
    model = models.build(config, empty=True)
    if card.arch == "attcls":  # a classifier alone: the generator slot is the identity
        assert not list(model.generator.parameters()) and len(card.attributes) == 40
        return
    assert next(model.generator.parameters()).is_meta
    if card.arch != "ugatit":  # label channels = attributes in training order
        assert folder._kwarg_default(
            models.generator_class(card.arch), dict(card.generator_kwargs), models.ATTR_COUNT_KWARG[card.arch]
        ) == len(card.attributes)


def test_cards_are_frozen() -> None:
    card = registry.get_card("stargan-celeba-128")
    with pytest.raises(TypeError):
        card.generator_kwargs["conv_dim"] = 8  # type: ignore[index]
    with pytest.raises(AttributeError):
        card.name = "x"  # type: ignore[misc]
    assert card.to_dict()["generator_kwargs"] == {"conv_dim": 64, "c_dim": 5, "repeat_num": 6}


def test_get_card_is_case_insensitive_and_suggests() -> None:
    assert registry.get_card(" StarGAN-CelebA-128 ").name == "stargan-celeba-128"
    with pytest.raises(registry.UnknownModelError) as info:
        registry.get_card("stargan-celeba-12")
    assert "did you mean stargan-celeba-128" in info.value.hint
    assert all(name in info.value.hint for name in ids)
    with pytest.raises(LookupError) as info:
        registry.get_card("zzz")
    assert "did you mean" not in info.value.hint


def test_registry_imports_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import faceedit.registry; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(m for m in new if m not in sys.stdlib_module_names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['faceedit']"
