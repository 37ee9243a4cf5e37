"""A user's own data and model: the README's example runs as shipped, and `as_tensorset` / `describe`
read every form of data the README names (arrays, a Dataset, an image folder) or say what is wrong."""

from __future__ import annotations

import ast
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import spotter
from spotter.data import TensorSet, as_tensorset, describe

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "own_data_and_model.py"


def _example_code() -> str:
    text = EXAMPLE.read_text()
    docstring_end = ast.parse(text).body[0].end_lineno
    return "\n".join(text.splitlines()[docstring_end:]).strip() + "\n"


def test_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Your own data and model")
    section = readme[start : readme.index("\n## ", start)]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == _example_code()
    for door in ("spotter.as_tensorset", "spotter.describe", "spotter.adapt"):
        assert door in section, door
    used = set(re.findall(r"\bspotter\.(\w+)", block))
    assert used <= set(spotter.__all__), used - set(spotter.__all__)


def test_example_runs_and_writes_the_audit(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "own"
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(out)])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    pattern = r"(\w+)\s+forget acc\s+([\d.]+)%\s+retain acc\s+([\d.]+)%\s+after PRA\s+([\d.]+)%"
    rows = {m.group(1): [float(v) for v in m.groups()[1:]] for m in map(re.match, [pattern] * 2, lines[:2])}
    assert set(rows) == {"original", "unlearned"}, lines
    assert rows["original"][0] >= 90 and rows["original"][1] >= 90  # the stand-in model is trained
    assert rows["unlearned"][0] < rows["original"][0]
    assert lines[-1] == f"done: class 3 unlearned and audited, report in {out / 'audit.md'}"
    assert (out / "audit.md").read_text().startswith("# Unlearning audit")
    assert (out / "audit.json").exists()


def test_audit_stays_the_function_after_write_report() -> None:
    """Importing spotter.audit's report binds the subpackage as `spotter.audit`; the API still
    resolves the function (the example looks write_report up first)."""
    probe = "import spotter; spotter.write_report; print(callable(spotter.audit))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


# ---- as_tensorset: every form ----


def _pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_numpy_hwc_uint8() -> None:
    x = _pixels((5, 6, 6, 3))
    data = as_tensorset(x, np.arange(5) % 2)
    assert data.x.shape == (5, 3, 6, 6) and data.x.dtype == torch.uint8 and data.y.dtype == torch.int64
    assert torch.equal(data.x, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert data.y.tolist() == [0, 1, 0, 1, 0]


def test_numpy_nhw_grey_becomes_one_channel() -> None:
    x = _pixels((4, 5, 5))
    data = as_tensorset(x, [0, 1, 2, 3])
    assert data.x.shape == (4, 1, 5, 5) and torch.equal(data.x[:, 0], torch.from_numpy(x))


def test_numpy_nchw_float_round_trips() -> None:
    x = _pixels((4, 3, 5, 5))
    data = as_tensorset(x.astype(np.float32) / 255, torch.tensor([3, 1, 0, 2]))
    assert data.x.shape == (4, 3, 5, 5) and data.x.dtype == torch.uint8
    assert torch.equal(data.x, torch.from_numpy(x))
    assert data.y.tolist() == [3, 1, 0, 2]


def test_resize_with_size() -> None:
    data = as_tensorset(_pixels((2, 4, 4)), [0, 1], size=8)
    assert data.x.shape == (2, 1, 8, 8)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, images: list, labels: list) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):  # noqa: ANN204 - (image, label)
        return self.images[i], self.labels[i]


def test_dataset_of_tensor_int_pairs() -> None:
    x = _pixels((6, 1, 7, 7))
    ds = _Pairs([torch.from_numpy(a).float() / 255 for a in x], [0, 1, 2, 0, 1, torch.tensor(2)])
    data = as_tensorset(ds)
    assert data.x.shape == (6, 1, 7, 7) and data.x.dtype == torch.uint8
    assert torch.equal(data.x, torch.from_numpy(x))
    assert data.y.tolist() == [0, 1, 2, 0, 1, 2]


def test_dataset_of_pil_images() -> None:
    from PIL import Image

    x = _pixels((3, 5, 5, 3))
    data = as_tensorset(_Pairs([Image.fromarray(a, mode="RGB") for a in x], [1, 0, 1]))
    assert data.x.shape == (3, 3, 5, 5)
    assert torch.equal(data.x, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert data.y.tolist() == [1, 0, 1]


def test_dataset_of_mixed_sizes_needs_size() -> None:
    ds = _Pairs([torch.zeros(1, 4, 4), torch.zeros(1, 6, 6)], [0, 1])
    with pytest.raises(ValueError, match=r"item 1's image is \(1, 6, 6\).*size="):
        as_tensorset(ds)
    assert as_tensorset(ds, size=5).x.shape == (2, 1, 5, 5)


def test_image_folder(tmp_path) -> None:
    from PIL import Image

    x = _pixels((5, 6, 6))
    for i, a in enumerate(x):
        folder = tmp_path / ("class_a" if i < 2 else "class_b")
        folder.mkdir(exist_ok=True)
        Image.fromarray(a, mode="L").save(folder / f"{i}.png")
    data = as_tensorset(tmp_path)
    assert data.x.shape == (5, 1, 6, 6) and data.x.dtype == torch.uint8
    assert data.y.tolist() == [0, 0, 1, 1, 1]  # sorted class folders are the ids
    assert torch.equal(data.x[:, 0], torch.from_numpy(x))  # PNG is lossless: pixels round-trip
    assert as_tensorset(str(tmp_path), size=3).x.shape == (5, 1, 3, 3)


def test_image_folder_with_splits_is_refused(tmp_path) -> None:
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="train/ and test/"):
        as_tensorset(tmp_path)


# ---- bad inputs: a ValueError naming the bad value ----


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.full((2, 4, 4), 2.0), [0, 1], r"\[2, 2\].*\[0, 1\].*uint8"),
        (np.linspace(-0.5, 1, 32).reshape(2, 4, 4), [0, 1], r"\[-0\.5, 1\]"),
        (_pixels((2, 4, 4)), [0, -1], r"negative labels \[-1\]"),
        (_pixels((2, 4, 4)), [0, 0.5], r"non-integer labels \[0\.5\]"),
        (_pixels((2, 4, 4)), ["cat", "dog"], r"dtype <U3.*'cat'"),
        (_pixels((5, 4, 4)), [0, 1, 2, 3], r"5 images but 4 labels"),
        (np.zeros((0, 4, 4), np.uint8), [], r"no images.*\(0, 4, 4\)"),
        (_pixels((16,)), [0] * 16, r"1 dimensions.*\(N, H, W\)"),
        (_pixels((2, 4, 4, 4)), [0, 1], r"\(2, 4, 4, 4\).*C = 1 or 3"),
    ],
)
def test_bad_arrays(images, labels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_tensorset(images, labels)


def test_bad_dataset_items() -> None:
    with pytest.raises(ValueError, match=r"item 1's label is -1|negative labels \[-1\]"):
        as_tensorset(_Pairs([torch.zeros(4, 4)] * 2, [0, -1]))
    with pytest.raises(ValueError, match=r"item 0's label is 0\.5"):
        as_tensorset(_Pairs([torch.zeros(4, 4)], [0.5]))
    with pytest.raises(ValueError, match=r"dataset is empty"):
        as_tensorset(_Pairs([], []))
    with pytest.raises(ValueError, match=r"item 0 of the dataset is a Tensor"):
        as_tensorset([torch.zeros(4, 4)])


def test_arrays_need_labels_and_folders_exist(tmp_path) -> None:
    with pytest.raises(ValueError, match="labels="):
        as_tensorset(_pixels((2, 4, 4)))
    with pytest.raises(ValueError, match="not a folder"):
        as_tensorset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        as_tensorset(tmp_path)


# ---- describe ----


def test_describe_matches_numpy() -> None:
    x = _pixels((20, 3, 7, 7), seed=1)
    info = describe(TensorSet(torch.from_numpy(x), torch.arange(20) % 4), "mine")
    pixels = x.astype(np.float64) / 255
    np.testing.assert_allclose(info.mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(info.std, pixels.std(axis=(0, 2, 3)), rtol=1e-10)
    assert (info.name, info.channels, info.size, info.num_classes) == ("mine", 3, 7, 4)
    assert info.class_names == ("class 0", "class 1", "class 2", "class 3")


def test_describe_classes_and_names() -> None:
    data = TensorSet(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 1]))
    assert describe(data, num_classes=5).num_classes == 5
    assert describe(data, class_names=["a", "b", "c"]).class_names == ("a", "b", "c")
    assert describe(data).std == (1e-3,)  # a constant channel does not divide by zero
    with pytest.raises(ValueError, match=r"num_classes=1 but the labels go up to 1"):
        describe(data, num_classes=1)
    with pytest.raises(ValueError, match=r"2 class_names for 3 classes"):
        describe(data, class_names=["a", "b"], num_classes=3)


def test_describe_refuses_non_square() -> None:
    data = TensorSet(torch.zeros(2, 1, 6, 8, dtype=torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"6x8.*square.*size=8"):
        describe(data)


def test_a_tensorset_passes_through() -> None:
    data = TensorSet(torch.from_numpy(_pixels((2, 1, 4, 4))), torch.tensor([0, 1]))
    assert torch.equal(as_tensorset(data).x, data.x)
    assert as_tensorset(data, size=2).x.shape == (2, 1, 2, 2)
