"""StarGAN on RaFD and on CelebA + RaFD (the mask vector): official fixtures through the importer and a
save/load round trip, layout recovery and its errors, the CLI import, and `edit --expression`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from faceedit import attributes, expressions, models
from faceedit.cli import app
from faceedit.errors import CheckpointError, UsageError
from faceedit.upstream import import_checkpoint

runner = CliRunner()
RAFD = ["angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
SOURCES = {"rafd": "stargan/stargan_rafd", "both": "stargan/stargan_both"}
OPTIONS = {"rafd": {"dataset": "rafd"}, "both": {}}  # 8 channels cannot tell RaFD from 8 attributes


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _errors(model: models.FaceModel, ref: np.lib.npyio.NpzFile) -> tuple[float, float]:
    """(max |G - reference| over every official label vector, max |classifier - D's class logits|)."""
    x = torch.from_numpy(ref["x"])
    c_org = ref["c_org"] if "c_org" in ref else np.zeros((len(x), 0), np.float32)
    targets = expressions.official_targets(model.config, c_org)
    assert len(targets) == len(ref["c_trg"])
    for ours, official in zip(targets, ref["c_trg"], strict=True):
        np.testing.assert_array_equal(ours, official)  # labels built exactly as test()/test_multi()
    with torch.no_grad():
        outs = [model.generator(x, torch.from_numpy(c)).numpy() for c in targets]
        logits = model.classifier(x).numpy()
    return float(np.abs(np.stack(outs) - ref["out_train_mode"]).max()), float(
        np.abs(logits - ref["d_out_cls"]).max()
    )


@pytest.mark.parametrize("dataset", ["rafd", "both"])
def test_fixtures_reproduced_through_import_and_save_load(
    fixtures_dir: Path, tmp_path: Path, dataset: str
) -> None:
    ref = np.load(fixtures_dir / "stargan" / f"stargan_{dataset}.npz")
    model = import_checkpoint("stargan", fixtures_dir / SOURCES[dataset], **OPTIONS[dataset])
    config = model.config
    assert expressions.dataset_of(config) == dataset
    assert config["conditioning"]["expressions"] == RAFD == list(ref["rafd_names"])
    assert config["attributes"] == (list(ref["attr_names"]) if dataset == "both" else [])
    assert max(_errors(model, ref)) <= 1e-5
    models.save(model, tmp_path / "m")
    assert max(_errors(models.load(tmp_path / "m"), ref)) <= 1e-5


def _zeros(fixtures_dir: Path, manifest: str) -> dict[str, torch.Tensor]:
    shapes = json.loads((fixtures_dir / "stargan" / f"{manifest}.json").read_text())
    return {k: torch.zeros(1).expand(s) if s else torch.tensor(0) for k, s in shapes.items()}


def _parameters(state: dict[str, torch.Tensor]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(t.numel() for k, t in state.items() if not k.endswith(buffers))


def test_full_size_both_manifest(fixtures_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    g, d = _zeros(fixtures_dir, "manifest_both_default"), _zeros(fixtures_dir, "manifest_both_default_D")
    torch.save(g, tmp_path / "models" / "200000-G.ckpt")
    torch.save(d, tmp_path / "models" / "200000-D.ckpt")
    model = import_checkpoint("stargan", tmp_path)
    count = sum(p.numel() for p in model.generator.parameters())
    assert count == _parameters(g) == 8_461_888  # 8,430,528 + 64 x 10 x 7 x 7 more input channels
    assert model.config["generator_kwargs"] == {"conv_dim": 64, "c_dim": 5, "repeat_num": 6, "c2_dim": 8}
    assert model.config["image_size"] == 128
    head = sum(p.numel() for p in model.classifier.parameters())
    assert head == _parameters(d) - d["conv1.weight"].numel()
    assert model.classifier.conv2.out_channels == 13


def test_layout_recovery_and_its_errors(fixtures_dir: Path, tmp_path: Path) -> None:
    rafd, both = fixtures_dir / SOURCES["rafd"], fixtures_dir / SOURCES["both"]
    with pytest.raises(UsageError, match=r"celeba or rafd.*--dataset celeba\|rafd"):
        import_checkpoint("stargan", rafd)
    # With --attrs naming 8 attributes the same files are a CelebA model.
    names = [f"A{i}" for i in range(8)]
    assert expressions.dataset_of(import_checkpoint("stargan", rafd, attrs=names).config) == "celeba"
    with pytest.raises(UsageError, match="no CelebA attributes"):
        import_checkpoint("stargan", rafd, dataset="rafd", attrs=names)
    with pytest.raises(UsageError, match="not a --dataset rafd StarGAN: the generator has 15 label channels"):
        import_checkpoint("stargan", both, dataset="rafd")
    with pytest.raises(UsageError, match="dataset 'faces' is not one of"):
        import_checkpoint("stargan", both, dataset="faces")
    with pytest.raises(UsageError, match="applies to StarGAN only"):
        import_checkpoint("stgan", fixtures_dir / "stgan/experiments/stgan_fixture", dataset="rafd")
    # Without its discriminator, 15 channels may be 15 attributes or 5 + 8 + mask.
    alone = tmp_path / "10000-G.ckpt"
    alone.write_bytes((both / "models" / "10000-G.ckpt").read_bytes())
    with pytest.raises(UsageError, match=r"celeba or both.*no discriminator"):
        import_checkpoint("stargan", alone)
    assert expressions.dataset_of(import_checkpoint("stargan", alone, dataset="both").config) == "both"
    with pytest.raises(CheckpointError, match="not an official StarGAN label layout"):
        expressions.resolve_layout(15, 7, None, None)


def _import(*args: str | Path):
    return runner.invoke(app, ["models", "import", "stargan", *map(str, args)])


def test_cli_import_both_and_rafd(fixtures_dir: Path, tmp_path: Path) -> None:
    both = _import(fixtures_dir / SOURCES["both"], "--out", tmp_path / "both")
    assert both.exit_code == 0, both.output
    assert "dataset both, expressions: angry" in both.stderr and "Black_Hair" in both.stderr
    ambiguous = _import(fixtures_dir / SOURCES["rafd"], "--out", tmp_path / "rafd")
    assert ambiguous.exit_code == 2 and not (tmp_path / "rafd").exists()
    assert len(ambiguous.stderr.strip().splitlines()) == 1 and "--dataset" in ambiguous.stderr
    assert "Traceback" not in ambiguous.output
    rafd = _import(fixtures_dir / SOURCES["rafd"], "--out", tmp_path / "rafd", "--dataset", "rafd")
    assert rafd.exit_code == 0, rafd.output
    assert models.load(tmp_path / "rafd").config["conditioning"]["dataset"] == "rafd"
    wrong = _import(fixtures_dir / SOURCES["both"], "--out", tmp_path / "w", "--dataset", "rafd")
    assert wrong.exit_code == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------------------------------
# Labels and editing


def _both_config() -> dict:
    return models.make_config(
        "stargan",
        {"conv_dim": 8, "c_dim": 2, "repeat_num": 1, "c2_dim": 8},
        attributes=["Blond_Hair", "Male"],
        image_size=32,
        template="celeba-178",
        resize="bilinear",
        conditioning=expressions.conditioning_block("both"),
    )


def test_encode_expression_and_attribute_edits() -> None:
    config = _both_config()
    source = np.zeros((1, 10), np.float32)
    source[0, [1, 2 + RAFD.index("sad")]] = 1  # Male, sad
    happy = expressions.encode(config, source, attributes.EditSpec(expression="happy"))
    expected = np.zeros((1, 12), np.float32)
    expected[0, 2 + RAFD.index("happy")] = 1
    expected[0, 11] = 1  # mask [0, 1]: the RaFD part is valid, the CelebA part zero
    np.testing.assert_array_equal(happy, expected)
    half = expressions.encode(config, source, attributes.EditSpec(expression="happy", intensity=0.5))
    assert half[0, 2 + RAFD.index("happy")] == 0.5 and half[0, 2 + RAFD.index("sad")] == 0.5
    blond = expressions.encode(config, source, attributes.EditSpec(add=("Blond_Hair",)))
    np.testing.assert_array_equal(blond, [[1, 1, *[0] * 8, 1, 0]])
    # The source expression comes from the softmax of the RaFD head; attributes from sigmoid.
    logits = np.array([[2.0, -1.0, *np.linspace(-1, 1, 8)]])
    np.testing.assert_array_equal(expressions.estimate(config, logits), [[1, 0, *[0] * 7, 1]])
    probs = expressions.probabilities(expressions.label_names(config), logits[0])
    assert abs(sum(probs[n] for n in RAFD) - 1) < 0.01 and probs["surprised"] > probs["angry"]


def test_check_refuses_what_the_layout_cannot_do() -> None:
    config = _both_config()
    assert expressions.check(config, attributes.EditSpec(expression="HAP")).expression == "happy"
    with pytest.raises(UsageError, match="angry, contemptuous, disgusted, fearful, happy, neutral, sad"):
        expressions.check(config, attributes.EditSpec(expression="joyful"))
    with pytest.raises(UsageError, match="cannot be combined"):
        expressions.check(config, attributes.EditSpec(add=("Male",), expression="sad"))
    celeba = {**config, "generator_kwargs": {"conv_dim": 8, "c_dim": 2, "repeat_num": 1, "c2_dim": 0}}
    celeba["conditioning"] = expressions.conditioning_block("celeba")
    with pytest.raises(UsageError, match="CelebA only and has no expressions"):
        expressions.check(celeba, attributes.EditSpec(expression="sad"))
    with pytest.raises(CheckpointError, match="says dataset 'both'"):
        expressions.dataset_of({**celeba, "conditioning": config["conditioning"]})


@pytest.fixture(scope="module")
def both_dir(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = import_checkpoint("stargan", fixtures_dir / SOURCES["both"])
    return models.save(model, tmp_path_factory.mktemp("both") / "m")


def _edit(photo: Path, model: Path, out: Path, *args: str):
    return runner.invoke(app, ["edit", str(photo), "-m", str(model), "-o", str(out), *args])


def test_edit_expression_grid_and_attributes(astronaut_path: Path, both_dir: Path, tmp_path: Path) -> None:
    result = _edit(astronaut_path, both_dir, tmp_path, "--expression", "happy", "--grid", "--json")
    assert result.exit_code == 0, result.output
    face = json.loads(result.stdout)["items"][0]["faces_detail"][0]
    assert [n for n in face["source"] if n in RAFD] == [max(RAFD, key=face["probabilities"].get)]
    before = np.asarray(Image.open(astronaut_path))
    after = np.asarray(Image.open(tmp_path / "astronaut_edited.png"))
    assert after.shape == before.shape and not np.array_equal(after, before)
    grid = Image.open(tmp_path / "astronaut_edited_grid.png")
    assert grid.size == (9 * 32 + 8 * 2, 32)  # the input, then every expression
    blond = _edit(astronaut_path, both_dir, tmp_path, "--add", "Blond_Hair", "--suffix", "_blond")
    assert blond.exit_code == 0, blond.output
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "astronaut_blond.png")), after)


def test_edit_expression_errors_exit_2(astronaut_path: Path, both_dir: Path, tmp_path: Path) -> None:
    unknown = _edit(astronaut_path, both_dir, tmp_path, "--expression", "joyful")
    assert (
        unknown.exit_code == 2 and "angry, contemptuous" in unknown.output and "surprised" in unknown.output
    )
    both = _edit(astronaut_path, both_dir, tmp_path, "--expression", "sad", "--add", "Male")
    assert both.exit_code == 2 and "mask" in both.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_source_names_the_expression(astronaut_path: Path, both_dir: Path, tmp_path: Path) -> None:
    result = _edit(astronaut_path, both_dir, tmp_path, "-e", "sad", "--source", "+happy,-Male", "--json")
    assert result.exit_code == 0, result.output
    source = json.loads(result.stdout)["items"][0]["faces_detail"][0]["source"]
    assert [n for n in source if n in RAFD] == ["happy"] and "Male" not in source
    two = _edit(astronaut_path, both_dir, tmp_path, "-e", "sad", "--source", "+happy,+sad")
    assert two.exit_code == 2 and "a face has one" in two.output


def test_a_mismatched_discriminator_beside_is_skipped(fixtures_dir: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "10000-G.ckpt").write_bytes(
        (fixtures_dir / SOURCES["both"] / "models/10000-G.ckpt").read_bytes()
    )
    (models_dir / "10000-D.ckpt").write_bytes(
        (fixtures_dir / SOURCES["rafd"] / "models/10000-D.ckpt").read_bytes()
    )
    model = import_checkpoint("stargan", tmp_path, dataset="both")  # a D found beside: warned, not used
    assert model.classifier is None and expressions.dataset_of(model.config) == "both"
    with pytest.raises(CheckpointError, match="predicts 8 classes, the generator takes 15 labels"):
        import_checkpoint("stargan", tmp_path, dataset="both", discriminator=models_dir / "10000-D.ckpt")


def test_cards_name_the_same_expressions() -> None:
    from faceedit import registry, specs  # the cards read the names from the facts table

    assert specs.RAFD_EXPRESSIONS == expressions.RAFD_EXPRESSIONS == tuple(RAFD)
    card = registry.get_card("stargan-celeba-rafd-128")
    config = models.make_config(
        "stargan", dict(card.generator_kwargs), **{k: v for k, v in card.config_fields().items()
                                                    if k not in ("arch", "generator_kwargs")}
    )  # fmt: skip
    assert expressions.dataset_of(config) == "both" and expressions.label_names(config)[-8:] == RAFD
