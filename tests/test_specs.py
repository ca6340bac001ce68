"""The per-architecture facts table (faceedit.specs) is the one definition everything else agrees with."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from faceedit import specs


def test_specs_is_standard_library_only() -> None:
    code = (
        "import sys, faceedit.specs; bad = {'numpy', 'torch', 'cv2'} & set(sys.modules); print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registry_cards_agree_with_the_table() -> None:
    from faceedit import registry

    for card in registry.list_cards():
        if card.arch not in specs.ARCHS:
            continue
        spec = specs.arch_spec(card.arch, card.variant, card.conditioning.get("dataset"))
        assert tuple(card.attributes) == spec.attributes, card.name
        assert card.template == spec.template, card.name
        assert card.resize == spec.resize, card.name
        assert dict(card.conditioning) == spec.conditioning(), card.name


def test_attribute_vocabulary_agrees_with_the_table() -> None:
    from faceedit import attributes

    assert attributes.CELEBA_ATTRIBUTES == specs.CELEBA_ATTRIBUTES
    for (arch, variant), names in attributes.DEFAULT_ATTRIBUTES.items():
        assert names == specs.arch_spec(arch, variant).attributes
    for arch, variant in specs.SPECS:
        cond = attributes.default_conditioning(arch, variant)
        assert cond == specs.arch_spec(arch, variant).conditioning()


def test_expressions_and_label_layouts_agree_with_the_table() -> None:
    from faceedit import expressions

    assert expressions.RAFD_EXPRESSIONS == specs.RAFD_EXPRESSIONS == tuple(sorted(specs.RAFD_EXPRESSIONS))
    for layout in ("rafd", "both"):
        block = expressions.conditioning_block(layout)
        assert block == specs.arch_spec("stargan", "port", layout).conditioning()


def test_training_defaults_agree_with_the_table() -> None:
    from faceedit.training import config

    for arch in ("stargan", "attgan", "stgan", "ugatit"):
        cfg = config.CONFIGS[arch]()
        spec = specs.arch_spec(arch, "port")
        assert cfg.template == spec.template, arch
        if spec.attributes:
            assert tuple(cfg.attrs) == spec.attributes, arch


def test_templates_agree_between_alignment_and_training_data() -> None:
    from faceedit import data
    from faceedit.face import align

    for name, t in specs.TEMPLATES.items():
        a = align.get_template(name)
        assert a.size == t.size and a.fit == t.fit and a.border == t.border
        if t.crop is not None:
            d = data.TEMPLATES[name]
            assert d.box(*specs.CELEBA_FRAME) == (t.left, t.top, t.left + t.crop, t.top + t.crop)
            assert d.resize == t.resize
            # the 5 points in the 128 crop are CelebA's mean points moved into the box and scaled
            k = 128 / t.crop
            expect = (np.asarray(specs.CELEBA_POINTS5) - [t.left, t.top] + 0.5) * k - 0.5
            np.testing.assert_allclose(a.points_at(128), expect, atol=1e-9)
        else:
            np.testing.assert_allclose(a.points_at(t.frame), np.asarray(t.points5), atol=1e-9)
    for alias, name in specs.TEMPLATE_ALIASES.items():
        assert align.get_template(alias).name == name
