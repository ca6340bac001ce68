"""Training data: official crops and splits, layout checks that name every problem, a batch order that
resumes and shards exactly, deterministic augmentation, and prepared datasets equal to on-the-fly ones."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceedit.data import (
    TEMPLATES,
    LoaderSpec,
    StepBatches,
    celeba,
    load_image,
    open_images,
    to_input,
    unpaired,
)
from faceedit.errors import UsageError
from tests.synthdata import make_celeba, make_unpaired

ATTRS = ("Blond_Hair", "Eyeglasses", "Male")


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_celeba(tmp_path_factory.mktemp("celeba"), n=16)


@pytest.fixture(scope="module")
def unpaired_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_unpaired(tmp_path_factory.mktemp("unpaired"), n=5)


def test_crop_boxes_are_the_official_ones() -> None:
    # StarGAN/STGAN port CenterCrop(178): rows 20..197; AttGAN-PyTorch CenterCrop(170): rows 24..193,
    # cols 4..173; official TF: 170 at top 26, left 3 (bicubic); U-GAT-IT: the whole picture.
    assert TEMPLATES["celeba-178"].box(178, 218) == (0, 20, 178, 198)
    assert TEMPLATES["celeba-170"].box(178, 218) == (4, 24, 174, 194)
    assert TEMPLATES["celeba-tf"].box(178, 218) == (3, 26, 173, 196)
    assert TEMPLATES["celeba-tf"].resize == "bicubic"
    assert TEMPLATES["selfie"].box(300, 200) == (0, 0, 300, 200)


def test_load_image_crops_then_resizes_like_torchvision(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    full = load_image(tmp_path / "a.png", TEMPLATES["celeba-170"], 170)
    assert np.array_equal(full, photo[24:194, 4:174])
    small = load_image(tmp_path / "a.png", TEMPLATES["celeba-178"], 64)
    expected = Image.fromarray(photo[20:198]).resize((64, 64), Image.Resampling.BILINEAR)
    assert np.array_equal(small, np.asarray(expected))


def test_labels_follow_the_requested_attribute_order(celeba_dir: Path) -> None:
    index = celeba.read_index(celeba_dir, ("Male", "Blond_Hair"))
    lines = (celeba_dir / "list_attr_celeba.txt").read_text().splitlines()
    header = lines[1].split()
    for row, line in enumerate(lines[2:]):
        values = line.split()[1:]
        expected = [values[header.index("Male")] == "1", values[header.index("Blond_Hair")] == "1"]
        assert index.labels[row].tolist() == [float(v) for v in expected]
    assert index.names[0] == "000001.jpg" and index.partition is not None


def test_every_layout_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "list_attr_celeba.txt").write_text("3\nBlond_Hair Male\na.jpg 1 -1\nb.jpg 1\nc.jpg 1 0\n")
    with pytest.raises(UsageError) as e:
        celeba.read_index(tmp_path, ("Blond_Hair", "Bald"), split="celeba")
    text = str(e.value)
    for part in (
        "img_align_celeba/ is missing",
        "line 4, 5",
        "list_eval_partition.txt is missing",
        "no column for Bald",
        "img_align_celeba/ (the aligned",
    ):
        assert part in text, part


def test_missing_data_folder_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist") as e:
        celeba.read_index(tmp_path / "nope", ATTRS)
    assert "list_attr_celeba.txt" in e.value.hint
    with pytest.raises(UsageError, match="trainB/ is missing"):
        (tmp_path / "u" / "trainA").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "u" / "trainA" / "x.png")
        unpaired.list_folders(tmp_path / "u")


def test_images_listed_but_absent_are_reported(celeba_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "img_align_celeba").mkdir()
    (tmp_path / "list_attr_celeba.txt").write_bytes((celeba_dir / "list_attr_celeba.txt").read_bytes())
    with pytest.raises(UsageError, match="16 image\\(s\\) listed"):
        celeba.read_index(tmp_path, ATTRS)


def _index(n: int) -> celeba.CelebAIndex:
    names = tuple(f"{i + 1:06d}.jpg" for i in range(n))
    partition = np.asarray([0] * 162770 + [1] * 19867 + [2] * (n - 182637), np.int8)
    return celeba.CelebAIndex(Path("."), names, np.zeros((n, 0), np.float32), (), partition)


def test_official_splits_of_each_code_base() -> None:
    index = _index(202599)
    order = list(range(202599))
    random.seed(1234)  # what yunjey/stargan does before shuffling the attribute lines
    random.shuffle(order)
    split = celeba.split_rows(index, "stargan", "official")
    assert split["test"].tolist() == order[:1999] and len(split["train"]) == 202599 - 1999
    split = celeba.split_rows(index, "attgan", "official")
    assert (split["train"][0], split["train"][-1], split["test"][0]) == (0, 181999, 182637)
    split = celeba.split_rows(index, "stgan", "official")
    assert len(split["train"]) == 200599 and split["test"][0] == 202599 - 1800
    split = celeba.split_rows(index, "attgan", "celeba")
    assert len(split["train"]) == 162770 and split["test"][0] == 182637


def test_batch_order_resumes_exactly_and_shards_disjointly() -> None:
    full = StepBatches(23, 3, seed=5)
    it = iter(full)
    first = [next(it) for _ in range(17)]  # 7 steps per epoch: crosses two epoch boundaries
    resumed = iter(StepBatches(23, 3, seed=5, start=9))
    assert [next(resumed) for _ in range(8)] == first[9:]
    assert first[0] != next(iter(StepBatches(23, 3, seed=6)))
    ranks = [next(iter(StepBatches(24, 4, seed=5, rank=r, world=2))) for r in range(2)]
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}


def test_flip_is_random_but_a_function_of_the_position(celeba_dir: Path) -> None:
    index = celeba.read_index(celeba_dir, ATTRS)
    source = open_images(index.root, celeba.IMAGE_DIR, index.names, TEMPLATES["celeba-178"], 32)
    flipping = celeba.CelebADataset(source, index.labels, flip=True, seed=3)
    plain = source[0]
    outcomes = {flipping[(0, epoch)][0].permute(1, 2, 0).numpy().tobytes() for epoch in range(12)}
    assert outcomes == {plain.tobytes(), plain[:, ::-1].tobytes()}
    assert torch.equal(flipping[(0, 4)][0], flipping[(0, 4)][0])


def test_unpaired_crops_are_random_sized_and_repeatable(unpaired_dir: Path) -> None:
    names = unpaired.list_folders(unpaired_dir)
    source = open_images(unpaired_dir, "trainA", names["trainA"], TEMPLATES["selfie"], 16 + 30)
    dataset = unpaired.UnpairedDataset(source, 16, seed=0, stream=0)
    crops = {dataset[(1, e)].numpy().tobytes() for e in range(8)}
    assert dataset[(1, 0)].shape == (3, 16, 16) and len(crops) > 2
    assert torch.equal(dataset[(2, 3)], dataset[(2, 3)])


def test_to_input_maps_uint8_to_minus_one_one() -> None:
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1)
    assert to_input(x, torch.device("cpu")).flatten().tolist() == pytest.approx(
        [-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6
    )


def test_prepared_celeba_gives_the_same_batches(celeba_dir: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    count = celeba.prepare(celeba_dir, prepared, TEMPLATES["celeba-170"], 32, workers=2)
    assert count == 16 and (prepared / "list_eval_partition.txt").is_file()
    spec = LoaderSpec(batch_size=4, seed=1, start=2)
    batches = []
    for root in (celeba_dir, prepared):
        index = celeba.read_index(root, ATTRS, "all")
        data = celeba.open_training(index, "attgan", "all", TEMPLATES["celeba-170"], 32, True, spec)
        batches.append([next(data.batches) for _ in range(5)])
    for (xa, la), (xb, lb) in zip(*batches, strict=True):
        assert torch.equal(xa, xb) and torch.equal(la, lb)
    spec = LoaderSpec(batch_size=4, seed=1, start=2, workers=2)  # worker processes read the memory map too
    data = celeba.open_training(index, "attgan", "all", TEMPLATES["celeba-170"], 32, True, spec)
    assert all(torch.equal(next(data.batches)[0], x) for x, _ in batches[0])
    with pytest.raises(UsageError, match="celeba-170 crops at 32 px"):
        celeba.open_training(index, "stargan", "all", TEMPLATES["celeba-178"], 32, True, spec)


def test_prepared_unpaired_gives_the_same_batches(unpaired_dir: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    assert unpaired.prepare(unpaired_dir, prepared, 16, workers=0) == 14
    spec = LoaderSpec(batch_size=2, seed=1)
    runs = [unpaired.open_training(root, 16, spec) for root in (unpaired_dir, prepared)]
    for _ in range(4):
        (a1, b1), (a2, b2) = next(runs[0].batches), next(runs[1].batches)
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert runs[0].fixed[0].shape == (2, 3, 16, 16)


def test_too_few_images_for_a_batch_is_a_usage_error(celeba_dir: Path) -> None:
    index = celeba.read_index(celeba_dir, ATTRS)
    with pytest.raises(UsageError, match="cannot fill one batch"):
        celeba.open_training(index, "stargan", "all", TEMPLATES["celeba-178"], 32, True, LoaderSpec(64, 0))
    with pytest.raises(UsageError, match="leaves no training images"):
        celeba.open_training(
            index, "stargan", "official", TEMPLATES["celeba-178"], 32, True, LoaderSpec(4, 0)
        )
