"""Calibration inputs: the user's pictures (crops, duplicates, unreadable files, the split by
source), context files and the demo's synthetic context, and ``accuracy data``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from nanosd_nas.cli import app
from nanosd_nas.search.distill import (
    SHIPPED_POOL_ID,
    CalibrationDataError,
    ContextError,
    Crop,
    calibration_data,
    calibration_plan,
    data_identity,
    demo_context,
    image_pool,
    load_context,
    load_teacher,
)

SIZE = 128  # the demo teacher's image size (mini)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("demo")


def _picture(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth colour picture (gradients and a seeded tint), cheap to compress."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [(x * rng.uniform(0.2, 1) + y * rng.uniform(0.2, 1) + rng.uniform(0, 255)) % 256
                for _ in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a.png (6 crops), big.png (1100x600: reduced to a 512 shorter side, 28 crops), grey.png
    (2 crops), small.png (40x60: enlarged, 1 crop), sub/b.jpg (4 crops); z_copy.png is a.png's
    pixels saved otherwise, broken.jpg is not an image, notes.txt is not a picture."""
    root = tmp_path / "pictures"
    (root / "sub").mkdir(parents=True)
    a = _picture(400, 260, seed=1)
    Image.fromarray(a).save(root / "a.png", compress_level=9)
    Image.fromarray(a).save(root / "z_copy.png", compress_level=1)
    Image.fromarray(_picture(1100, 600, seed=2)).save(root / "big.png")
    Image.fromarray(_picture(256, 140, seed=3)[..., 0]).save(root / "grey.png")
    Image.fromarray(_picture(40, 60, seed=4)).save(root / "small.png")
    Image.fromarray(_picture(260, 260, seed=5)).save(root / "sub" / "b.jpg", quality=90)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all")
    (root / "notes.txt").write_text("not a picture")
    return root


def test_a_folder_gives_crops_at_the_size_without_duplicates_or_unreadable_files(folder):
    pool = image_pool(SIZE, folder)
    sources = {s.name: s for s in pool.sources}
    assert list(sources) == ["a.png", "big.png", "grey.png", "small.png", "sub/b.jpg"]
    assert {name: s.crops for name, s in sources.items()} == {
        "a.png": 6, "big.png": 28, "grey.png": 2, "small.png": 1, "sub/b.jpg": 4}
    assert (sources["big.png"].width, sources["big.png"].height) == (1100, 600)
    assert [name for name, s in sources.items() if not s.colour] == ["grey.png"]
    assert pool.duplicates == [("z_copy.png", "a.png")]
    assert pool.unreadable == ["broken.jpg"]
    grey = list(sources).index("grey.png")
    small = list(sources).index("small.png")
    crops = pool.cut([Crop(grey, 1), Crop(small, 0), Crop(small, 0, mirrored=True)])
    assert crops.shape == (3, 3, SIZE, SIZE)
    assert float(crops.min()) >= 0 and float(crops.max()) <= 1
    assert torch.equal(crops[0, 0], crops[0, 1]) and torch.equal(crops[0, 1], crops[0, 2])
    assert torch.equal(crops[2], crops[1].flip(-1))


def test_calibration_from_a_folder_holds_out_whole_source_files(teacher, folder):
    data = calibration_data(teacher.model, samples=24, holdout=0.3, seed=1, images=folder,
                            context=teacher.context)
    assert len(data.distill) + len(data.heldout) == 24
    assert len(data.distill) > 0 and len(data.heldout) > 0
    assert not set(data.distill.sources) & set(data.heldout.sources)
    assert set(data.distill.sources) | set(data.heldout.sources) <= {
        "a.png", "big.png", "grey.png", "small.png", "sub/b.jpg"}
    assert data.distill.images.shape[1:] == (3, SIZE, SIZE)
    assert data.plan.composition()["unreadable"] == ["broken.jpg"]


def test_a_folder_without_a_readable_picture_is_one_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(CalibrationDataError, match="no PNG or JPEG") as caught:
        image_pool(SIZE, empty)
    assert str(empty) in str(caught.value) and "\n" not in str(caught.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "one.png").write_bytes(b"\x89PNG but cut short")
    (broken / "two.jpeg").write_bytes(b"")
    with pytest.raises(CalibrationDataError, match="no readable image") as caught:
        image_pool(SIZE, broken)
    assert str(broken) in str(caught.value) and "one.png" in str(caught.value)
    with pytest.raises(CalibrationDataError, match="no such folder"):
        image_pool(SIZE, tmp_path / "nowhere")


def test_one_picture_cannot_be_split(tmp_path):
    root = tmp_path / "one"
    root.mkdir()
    Image.fromarray(_picture(512, 512, seed=6)).save(root / "only.png")
    with pytest.raises(CalibrationDataError, match="at least two"):
        calibration_plan(SIZE, samples=8, images=root, contexts=1)


def test_samples_get_the_context_rows_of_a_seeded_draw(teacher):
    context = teacher.context
    data = calibration_data(teacher.model, samples=16, seed=2, context=context)
    rows = torch.cat([data.distill.context_rows, data.heldout.context_rows])
    assert sorted(rows.tolist()) == sorted(list(range(8)) * 2)  # every row, evenly
    for part in (data.distill, data.heldout):
        assert part.context.shape == (len(part), 77, 64)
        assert torch.equal(part.context, context[part.context_rows])
        sample, timesteps, condition = part.unet_inputs(slice(0, 3))
        assert condition.shape == (3, 77, 64) and sample.shape[0] == timesteps.shape[0] == 3
    assert len(set(data.distill.context_rows.tolist())) > 1
    again = calibration_data(teacher.model, samples=16, seed=2, context=context)
    assert torch.equal(again.distill.context_rows, data.distill.context_rows)


def test_the_demo_context_is_prompt_like_with_a_null_prompt(teacher):
    context = teacher.context
    assert context is not None and context.shape == (8, 77, 64)
    assert torch.equal(context, demo_context(teacher.spec))
    assert "synthetic" in teacher.context_label and "null prompt" in teacher.context_label
    null = context[0]
    assert torch.equal(null[2:], null[-1].expand(75, -1))  # start, end, then padding only
    assert torch.equal(context[:, 0], null[0].expand(8, -1))  # one start token
    assert all(torch.equal(context[i, -1], null[-1]) for i in range(8))  # shared padding
    assert all(not torch.equal(context[i], context[j])
               for i in range(8) for j in range(i + 1, 8))
    distinct = torch.unique(context.reshape(-1, 64), dim=0).shape[0]
    assert distinct < 8 * 77 // 2  # noise would give 616 distinct rows


def _save_context(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, path)
    return path


def test_context_files_are_checked_in_one_line(teacher, tmp_path):
    good = torch.randn(3, 5, 64)
    loaded = load_context(_save_context(tmp_path / "half.safetensors",
                                        {"prompts": good.half()}), teacher.spec)
    assert loaded.dtype == torch.float32 and loaded.shape == (3, 5, 64)
    several = _save_context(tmp_path / "several.safetensors",
                            {"context": good, "mask": torch.ones(3, 5)})
    assert torch.equal(load_context(several, teacher.spec), good)
    bad = {
        "shape.safetensors": {"c": torch.randn(3, 5, 32)},
        "flat.safetensors": {"c": torch.randn(5, 64)},
        "ints.safetensors": {"c": torch.ones(3, 5, 64, dtype=torch.int64)},
        "bools.safetensors": {"c": torch.ones(3, 5, 64, dtype=torch.bool)},
        "empty.safetensors": {"c": torch.ones(0, 5, 64)},
        "two.safetensors": {"a": good, "b": good.clone()},
    }
    for name, tensors in bad.items():
        path = _save_context(tmp_path / name, tensors)
        with pytest.raises(ContextError) as caught:
            load_context(path, teacher.spec)
        message = str(caught.value)
        assert str(path) in message and "[n, tokens, 64]" in message and "\n" not in message
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{junk")
    with pytest.raises(ContextError, match=r"junk\.safetensors"):
        load_context(tmp_path / "junk.safetensors", teacher.spec)
    nan = _save_context(tmp_path / "nan.safetensors", {"c": torch.full((1, 2, 64), np.nan)})
    with pytest.raises(ContextError, match="NaN"):
        load_context(nan, teacher.spec)


def test_data_identity_names_the_pictures_and_the_context(teacher, folder):
    context = teacher.context
    shipped = data_identity(None, context)
    assert shipped == data_identity(None, context.clone()) and len(shipped) == 16
    assert shipped != data_identity(None, context[:4])
    own = data_identity(folder, context)
    assert own not in (shipped, SHIPPED_POOL_ID)
    (folder / "notes.txt").write_text("changed, but not a picture")
    assert data_identity(folder, context) == own
    (folder / "small.png").rename(folder / "smaller.png")
    assert data_identity(folder, context) != own


def test_accuracy_data_reports_the_shipped_pool_without_duplicates():
    result = CliRunner().invoke(app, ["accuracy", "data", "--samples", "60", "--teacher", "demo",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = [s["name"] for s in report["sources"]]
    assert "chelsea" in names and "cat" not in names
    assert report["duplicates"] == [{"name": "cat", "same_as": "chelsea"}]
    assert report["unreadable"] == [] and report["image_size"] == SIZE
    assert sum(s["chosen"] for s in report["sources"]) == report["samples"] == 60
    assert report["distill"] + report["heldout"] == 60
    assert sum(s["chosen"] for s in report["sources"] if s["heldout"]) == report["heldout"]
    assert report["pool_crops"] == sum(s["crops"] for s in report["sources"])
    assert sum(report["context_rows"].values()) == 60
    assert 0 < report["colour_share"] < 1
    assert {k: report["context"][k] for k in ("n", "tokens", "dim")} == {
        "n": 8, "tokens": 77, "dim": 64}


def test_accuracy_data_on_a_folder_and_its_table(folder):
    result = CliRunner().invoke(app, ["accuracy", "data", "--images", str(folder),
                                      "--samples", "12"])
    assert result.exit_code == 0, result.output
    assert "sub/b.jpg" in result.stdout and "z_copy.png = a.png" in result.stdout
    assert "unreadable files skipped: 1 (broken.jpg)" in result.stdout


def test_a_bad_context_or_folder_is_one_line_and_exit_2(tmp_path):
    path = _save_context(tmp_path / "wrong.safetensors", {"c": torch.randn(2, 7, 48)})
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "accuracy", "data", "--context", str(path)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NANOSD_NAS_HOME": str(tmp_path)})
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(path) in lines[0] and "[2, 7, 48]" in lines[0] and "[n, tokens, 64]" in lines[0]
