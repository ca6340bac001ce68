"""Attribute semantics: the official label arrays of every fixture, TF rules, names, intensity, --source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceedit import attributes as A
from faceedit.errors import EXIT_USAGE, CheckpointError, UsageError

STARGAN = {"scheme": "stargan", "rules": "port"}  # as the registry writes it (thres_int defaulted)
ATTGAN_PORT = {"scheme": "attgan", "thres_int": 0.5, "rules": "port"}
ATTGAN_TF = {"scheme": "attgan", "thres_int": 0.5, "rules": "tf"}
STGAN_PORT = {"scheme": "stgan", "thres_int": 0.5, "rules": "port"}
STGAN_TF = {"scheme": "stgan", "thres_int": 0.5, "rules": "tf"}
THIRTEEN = list(A.ATTGAN_ATTRIBUTES)
# Black_Hair, Male, No_Beard, Young (image 0 of the AttGAN fixture)
DARK_MAN = np.array([[0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1]], dtype=np.float32)


def _load(fixtures_dir: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(fixtures_dir / name) as npz:
        return {key: npz[key] for key in npz.files}


def _col(name: str, attributes: list[str] = THIRTEEN) -> int:
    return attributes.index(name)


# --- vocabulary ----------------------------------------------------------------------------------------


def test_vocabulary_and_default_lists() -> None:
    assert len(A.CELEBA_ATTRIBUTES) == 40 == len(set(A.CELEBA_ATTRIBUTES))
    assert A.CELEBA_ATTRIBUTES[0] == "5_o_Clock_Shadow" and A.CELEBA_ATTRIBUTES[-1] == "Young"
    assert (len(A.STARGAN_ATTRIBUTES), len(A.STGAN_PORT_ATTRIBUTES), len(A.ATTGAN_ATTRIBUTES)) == (5, 10, 13)
    for names in A.DEFAULT_ATTRIBUTES.values():
        assert set(names) <= set(A.CELEBA_ATTRIBUTES)
    assert A.DEFAULT_ATTRIBUTES[("stgan", "tf")] == A.ATTGAN_ATTRIBUTES
    for group in A.EXCLUSIVE_GROUPS:
        assert set(group) <= set(A.CELEBA_ATTRIBUTES)
    for rules in (A.PORT_RULES, A.TF_RULES, A.HAIR_RULES):
        assert all(set(v) | {k} <= set(A.CELEBA_ATTRIBUTES) for k, v in rules.items())


def test_default_conditioning_and_validation() -> None:
    assert A.default_conditioning("stgan", "tf") == STGAN_TF
    assert A.default_conditioning("ugatit")["scheme"] == "none"
    assert A.parse_conditioning({"scheme": "stargan"}) == A.Conditioning("stargan", 0.5, "port")
    for bad in (
        {"scheme": "pix2pix"},
        {"scheme": "attgan", "rules": "keras"},
        {"scheme": "attgan", "thres_int": 0},
    ):
        with pytest.raises(CheckpointError):
            A.parse_conditioning(bad)


def test_module_does_not_import_torch() -> None:
    code = "import sys, faceedit.attributes; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- official label arrays (fixtures) ------------------------------------------------------------------


def test_stargan_create_labels(fixtures_dir: Path) -> None:
    fx = _load(fixtures_dir, "stargan/stargan_fixture.npz")
    names = [str(n) for n in fx["attr_names"]]
    labels, conds = A.grid(STARGAN, names, fx["c_org"], reconstruction=False)
    assert labels == names and conds.dtype == np.float32
    np.testing.assert_array_equal(conds, fx["c_trg"])
    with_rec = A.grid(STARGAN, names, fx["c_org"])[1]
    np.testing.assert_array_equal(with_rec[0], fx["c_org"])


def test_attgan_test_py_targets(fixtures_dir: Path) -> None:
    fx = _load(fixtures_dir, "attgan/attgan_fixture.npz")
    names = [str(n) for n in fx["attr_names"]]
    assert names == THIRTEEN and float(fx["test_int"]) == 1.5
    labels, conds = A.grid(ATTGAN_PORT, names, fx["att_a"], intensity=float(fx["test_int"]))
    assert labels[0] == "reconstruction"
    np.testing.assert_array_equal(conds, fx["att_b_scaled"])
    att_b = [A.targets(ATTGAN_PORT, names, fx["att_a"], spec) for spec in A.grid_specs(names)]
    np.testing.assert_array_equal(np.stack(att_b), fx["att_b"])
    # the conflict-cleared entries really are part of this: Mustache on clears No_Beard (port rule)
    assert (fx["att_b_scaled"][10][:, _col("No_Beard")] == -0.5).all()


def test_attgan_add_remove_match_the_official_flip(fixtures_dir: Path) -> None:
    fx = _load(fixtures_dir, "attgan/attgan_fixture.npz")
    for i, name in enumerate(THIRTEEN, start=1):
        for n, face in enumerate(fx["att_a"]):
            on = face[i - 1] == 0
            spec = A.EditSpec(add=(name,) if on else (), remove=() if on else (name,), intensity=1.5)
            got = A.encode(ATTGAN_PORT, THIRTEEN, face[None], spec)
            np.testing.assert_array_equal(got[0], fx["att_b_scaled"][i][n])


def test_attgan_slider(fixtures_dir: Path) -> None:
    fx = _load(fixtures_dir, "attgan/attgan_fixture.npz")
    spec = A.EditSpec(add=("Male",), slide=True)
    slides = [A.encode(ATTGAN_PORT, THIRTEEN, fx["att_a"], s) for s in A.sweep(spec, fx["slide_values"])]
    np.testing.assert_array_equal(np.stack(slides), fx["slide_att_b_scaled"])
    assert A.parse_sweep("-1:1:3") == tuple(float(v) for v in fx["slide_values"])


def test_stgan_port_difference_vectors(fixtures_dir: Path) -> None:
    fx = _load(fixtures_dir, "stgan/stgan_fixture.npz")
    names = [str(n) for n in fx["attr_names"]]
    specs = A.grid_specs(names, reconstruction=False)
    c_trg = np.stack([A.targets(STGAN_PORT, names, fx["c_org"], spec) for spec in specs])
    np.testing.assert_array_equal(c_trg, fx["c_trg"])
    np.testing.assert_array_equal(A.grid(STGAN_PORT, names, fx["c_org"])[1], fx["diff_test"])
    np.testing.assert_array_equal(A.grid(STGAN_PORT, names, fx["c_org"], 0.5)[1], fx["diff_sample"])


# --- TF rules (hand-checked) ---------------------------------------------------------------------------


def test_mustache_rule_is_port_only() -> None:
    spec = A.EditSpec(add=("Mustache",))
    port = A.encode(ATTGAN_PORT, THIRTEEN, DARK_MAN, spec)[0]
    tf = A.encode(ATTGAN_TF, THIRTEEN, DARK_MAN, spec)[0]
    assert port[_col("Mustache")] == tf[_col("Mustache")] == 1.0
    assert port[_col("No_Beard")] == -0.5 and tf[_col("No_Beard")] == 0.5
    stgan_tf = A.encode(STGAN_TF, THIRTEEN, DARK_MAN, spec)[0]
    assert stgan_tf[_col("No_Beard")] == 0.0 and stgan_tf[_col("Mustache")] == 1.0
    # the port's rule is a pair: growing "no beard" shaves the moustache too
    with_moustache = DARK_MAN.copy()
    with_moustache[0, _col("Mustache")] = 1
    no_beard = A.targets(ATTGAN_PORT, THIRTEEN, with_moustache, A.EditSpec(add=("No_Beard",)))[0]
    assert no_beard[_col("Mustache")] == 0


def test_stgan_tf_diff_hand_checked() -> None:
    # Blond on: b = Blond 1 (×test_int), Black cleared -> diff = (0.5·t + 0.5) on Blond, -1 on Black
    expected = np.zeros(13, np.float32)
    expected[[_col("Blond_Hair"), _col("Black_Hair")]] = [1.0, -1.0]
    got = A.encode(STGAN_TF, THIRTEEN, DARK_MAN, A.EditSpec(toggle=("Blond_Hair",)))[0]
    np.testing.assert_array_equal(got, expected)
    expected[_col("Blond_Hair")] = 1.5
    got = A.encode(STGAN_TF, THIRTEEN, DARK_MAN, A.EditSpec(add=("Blond_Hair",), intensity=2.0))[0]
    np.testing.assert_array_equal(got, expected)
    # removing Male at test_int 0 still moves it by -thres_int; at -1 it is a no-op (official formula)
    male = _col("Male")
    assert (
        A.encode(STGAN_TF, THIRTEEN, DARK_MAN, A.EditSpec(remove=("Male",), intensity=0.0))[0][male] == -0.5
    )
    assert not A.encode(STGAN_TF, THIRTEEN, DARK_MAN, A.EditSpec(remove=("Male",), intensity=-1.0)).any()
    # slider: the target entry is SET to the value, the source is subtracted, no conflict rules
    slid = A.encode(
        STGAN_TF, THIRTEEN, DARK_MAN, A.EditSpec(add=("Blond_Hair",), intensity=0.25, slide=True)
    )[0]
    assert slid[_col("Blond_Hair")] == 0.75 and np.count_nonzero(slid) == 1


def test_tf_hairline_rules_on_a_custom_list() -> None:
    names = ["Bald", "Bangs", "Receding_Hairline", "Straight_Hair", "Wavy_Hair"]
    source = np.array([[1, 0, 1, 0, 1]], dtype=np.float32)
    bangs = A.targets(ATTGAN_TF, names, source, A.EditSpec(add=("Bangs",)))
    np.testing.assert_array_equal(bangs, [[0, 1, 0, 0, 1]])
    straight = A.targets(ATTGAN_TF, names, source, A.EditSpec(toggle=("Straight_Hair",)))
    np.testing.assert_array_equal(straight, [[1, 0, 1, 1, 0]])
    # only when the edited attribute becomes 1: removing Bald leaves Bangs alone
    np.testing.assert_array_equal(
        A.targets(ATTGAN_TF, names, source, A.EditSpec(remove=("Bald",))), [[0, 0, 1, 0, 1]]
    )
    # StarGAN semantics never touch these (hair colours only)
    np.testing.assert_array_equal(
        A.targets(STARGAN, names, source, A.EditSpec(add=("Bangs",))), [[1, 1, 1, 0, 1]]
    )


def test_stargan_and_stgan_port_remove_hair_without_switching() -> None:
    source = np.array([[1, 0, 0, 1, 1]], dtype=np.float32)
    got = A.encode(STARGAN, list(A.STARGAN_ATTRIBUTES), source, A.EditSpec(remove=("Black_Hair",)))
    np.testing.assert_array_equal(got, [[0, 0, 0, 1, 1]])


# --- intensity -----------------------------------------------------------------------------------------


def test_stargan_intensity_interpolates_labels() -> None:
    names, source = list(A.STARGAN_ATTRIBUTES), np.array([[1, 0, 0, 1, 1]], dtype=np.float32)
    spec = A.EditSpec(add=("Blond_Hair",), remove=("Young",))
    full = A.encode(STARGAN, names, source, spec)
    np.testing.assert_array_equal(full, [[0, 1, 0, 1, 0]])
    np.testing.assert_array_equal(A.encode(STARGAN, names, source, spec.with_intensity(0.0)), source)
    np.testing.assert_allclose(
        A.encode(STARGAN, names, source, spec.with_intensity(0.3)), [[0.7, 0.3, 0, 1, 0.7]]
    )


def test_attgan_multi_attribute_intensities_like_test_multi() -> None:
    spec = A.parse_edit(add=["blond hair=0.8,Eyeglasses"], remove=["YOUNG"], intensity=1.2)
    got = A.encode(ATTGAN_PORT, THIRTEEN, DARK_MAN, spec)[0]
    assert got[_col("Blond_Hair")] == np.float32(0.8)
    assert got[_col("Eyeglasses")] == np.float32(1.2) and got[_col("Young")] == np.float32(-1.2)
    assert got[_col("Black_Hair")] == -0.5  # conflict-cleared entries stay at ±thres_int
    assert got[_col("Male")] == 0.5


def test_stgan_port_scales_the_whole_difference_with_the_edit() -> None:
    names, source = list(A.STGAN_PORT_ATTRIBUTES), np.zeros((1, 10), np.float32)
    source[0, names.index("Brown_Hair")] = 1
    spec = A.parse_edit(add=["Blond_Hair=0.4", "Male"], intensity=0.7)
    got = A.encode(STGAN_PORT, names, source, spec)[0]
    assert got[names.index("Blond_Hair")] == np.float32(0.4) and got[names.index("Brown_Hair")] == np.float32(
        -0.4
    )
    assert got[names.index("Male")] == np.float32(0.7) and np.count_nonzero(got) == 3
    assert not A.encode(STGAN_PORT, names, source, A.EditSpec(add=("Brown_Hair",))).any()  # already so


def test_sweep_parsing() -> None:
    assert A.parse_sweep("0,0.5, 1") == (0.0, 0.5, 1.0)
    assert A.parse_sweep("0:1:5") == (0.0, 0.25, 0.5, 0.75, 1.0)
    for bad in ("0:1", "0:1:1", "a,b", "", "0:inf:3"):
        with pytest.raises(UsageError):
            A.parse_sweep(bad)
    specs = A.sweep(A.EditSpec(add=("Male",)), [0.5, 1.0])
    assert [s.intensity for s in specs] == [0.5, 1.0] and specs[0].add == ("Male",)


# --- names and usage errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["blond_hair", "BLOND-HAIR", "Blond hair", " blond ", "blo"])
def test_names_are_forgiving(typed: str) -> None:
    assert A.resolve(typed, THIRTEEN) == "Blond_Hair"


def test_unknown_attribute_lists_the_known_ones() -> None:
    with pytest.raises(UsageError) as err:
        A.check(A.STARGAN_ATTRIBUTES, A.EditSpec(add=("Blnde_Hair",)), model="stargan-celeba-128")
    assert err.value.exit_code == EXIT_USAGE
    assert "Black_Hair, Blond_Hair, Brown_Hair, Male, Young" in err.value.message
    assert "stargan-celeba-128" in err.value.message and "Blond_Hair" in err.value.hint


def test_celeba_attribute_missing_from_the_model_says_so() -> None:
    with pytest.raises(UsageError) as err:
        A.check(A.STARGAN_ATTRIBUTES, A.EditSpec(add=("smiling",)))
    assert "not trained on the CelebA attribute Smiling" in err.value.message
    assert "Male" in err.value.message


def test_ambiguous_abbreviation() -> None:
    with pytest.raises(UsageError, match=r"ambiguous.*Big_Lips, Big_Nose") as err:
        A.check(A.CELEBA_ATTRIBUTES, A.EditSpec(add=("big",)))
    assert err.value.exit_code == EXIT_USAGE
    assert A.resolve("wearing_hat", A.CELEBA_ATTRIBUTES) == "Wearing_Hat"  # an exact name beats prefixes
    with pytest.raises(UsageError, match="unknown"):  # two letters are never taken as an abbreviation
        A.resolve("bl", THIRTEEN)


def test_add_and_remove_of_the_same_attribute() -> None:
    with pytest.raises(UsageError, match="both --add and --remove"):
        A.parse_edit(add=["Male"], remove=["male"])
    spec = A.parse_edit(add=["blond"], remove=["Blond_Hair"])  # same only once resolved
    with pytest.raises(UsageError, match="both --add and --remove"):
        A.check(THIRTEEN, spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"add": ["Male=x"]}, "not a number"),
        ({"add": ["=0.5"]}, "names no attribute"),
        ({"add": ["Male=0.5", "Male=0.7"]}, "two intensities"),
        ({"add": ["Male"], "intensity": float("nan")}, "finite"),
        ({"toggle": ["Male"], "slide": True}, "slider"),
    ],
)
def test_bad_edit_options(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        A.parse_edit(**kwargs)


@pytest.mark.parametrize(
    ("conditioning", "attributes", "spec", "match"),
    [
        (STARGAN, A.STARGAN_ATTRIBUTES, A.EditSpec(add=("Black_Hair", "Blond_Hair")), "cannot both"),
        (ATTGAN_TF, THIRTEEN, A.EditSpec(add=("Bald", "Bangs")), "cannot both"),
        (ATTGAN_PORT, THIRTEEN, A.EditSpec(add=("Mustache", "No_Beard")), "cannot both"),
        (STARGAN, A.STARGAN_ATTRIBUTES, A.EditSpec(add=("Male",), slide=True), "slider"),
        (STGAN_PORT, A.STGAN_PORT_ATTRIBUTES, A.EditSpec(add=("Male",), slide=True), "slider"),
        ({"scheme": "none"}, (), A.EditSpec(add=("Male",)), "no attributes"),
    ],
)
def test_edits_the_scheme_cannot_do(
    conditioning: dict, attributes: tuple, spec: A.EditSpec, match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        A.check(attributes, spec, conditioning)


def test_combinations_the_scheme_allows() -> None:
    # TF rules have no Mustache/No_Beard pair; a remove never conflicts; sliders apply no rules
    A.check(THIRTEEN, A.EditSpec(add=("Mustache", "No_Beard")), ATTGAN_TF)
    A.check(THIRTEEN, A.EditSpec(add=("Blond_Hair",), remove=("Black_Hair",)), ATTGAN_PORT)
    A.check(THIRTEEN, A.EditSpec(add=("Bald", "Bangs"), slide=True), STGAN_TF)
    assert A.encode({"scheme": "none"}, [], np.zeros((2, 0)), A.EditSpec()) is None


def test_encode_rejects_non_binary_source() -> None:
    with pytest.raises(ValueError, match="0/1"):
        A.encode(ATTGAN_PORT, THIRTEEN, DARK_MAN * 0.5, A.EditSpec())
    with pytest.raises(ValueError, match="shape"):
        A.encode(ATTGAN_PORT, THIRTEEN, DARK_MAN[:, :5], A.EditSpec())


def test_describe() -> None:
    assert A.EditSpec().describe() == "reconstruction"
    assert (
        A.parse_edit(add=["Male"], remove=["Young=0.5"], intensity=0.8).describe()
        == "-Young +Male Young@0.5 @0.8"
    )


# --- source attributes ---------------------------------------------------------------------------------


def test_labels_from_logits() -> None:
    logits = np.array([[-3.0, 0.0, 0.1, np.nan]])
    np.testing.assert_array_equal(A.labels_from_logits(logits), [[0, 0, 1, 0]])


def test_source_absolute_relative_and_none() -> None:
    names = list(A.STARGAN_ATTRIBUTES)
    estimate = np.array([[1, 0, 0, 1, 1], [0, 1, 0, 0, 0]], dtype=np.float32)
    absolute = A.source_labels(names, 2, A.parse_source("male, young", names))
    np.testing.assert_array_equal(absolute, [[0, 0, 0, 1, 1]] * 2)
    relative = A.source_labels(names, 2, A.parse_source("+Blond_Hair,-young", names), estimate)
    np.testing.assert_array_equal(relative, [[1, 1, 0, 1, 0], [0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(A.source_labels(names, 1, A.parse_source("none", names)), [[0] * 5])
    np.testing.assert_array_equal(A.source_labels(names, 2, None, estimate), estimate)


@pytest.mark.parametrize(
    ("text", "match"),
    [("Male,-Young", "mixes"), ("", "empty"), ("+Male,-male", "both on and off"), ("Bald", "not trained")],
)
def test_bad_source(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        A.parse_source(text, A.STARGAN_ATTRIBUTES)


def test_source_needs_classifier_or_full_list() -> None:
    names = list(A.ATTGAN_ATTRIBUTES)
    with pytest.raises(UsageError, match="no attribute classifier") as err:
        A.source_labels(names, 1, A.parse_source("+Male", names), None)
    assert "--source" in err.value.hint
    with pytest.raises(UsageError, match="no attribute classifier"):
        A.source_labels(names, 1, None, None)
