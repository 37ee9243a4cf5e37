"""Splits, batching and augmentation."""

from __future__ import annotations

import pytest
import torch

from spotter.data import TensorSet, augment, batches, make_splits, synthetic

K = 4


def indexed_set(n: int, num_classes: int = K, offset: int = 0) -> TensorSet:
    """Images that carry their own index in two pixels, so samples can be traced through splits."""
    i = torch.arange(n) + offset
    x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = (i % 256).to(torch.uint8)
    x[:, 0, 0, 1] = (i // 256).to(torch.uint8)
    return TensorSet(x, i % num_classes)


def ids(s: TensorSet) -> list[int]:
    return (s.x[:, 0, 0, 0].long() + 256 * s.x[:, 0, 0, 1].long()).tolist()


@pytest.fixture
def data() -> tuple[TensorSet, TensorSet]:
    return indexed_set(200), indexed_set(80, offset=1000)


@pytest.mark.parametrize("forget", [(1,), (0, 3), (3, 1, 2)])
def test_splits_hold_the_right_classes(data, forget):
    train, test = data
    s = make_splits(train, test, forget, K, val_size=20, shots=3, seed=0)
    assert s.forget_classes == tuple(sorted(forget)) and s.num_classes == K
    assert set(s.forget.y.tolist()) == set(forget)
    assert set(s.test_forget.y.tolist()) == set(forget)
    assert not set(s.retain.y.tolist()) & set(forget)
    assert not set(s.test_retain.y.tolist()) & set(forget)
    assert set(s.retain.y.tolist()) == set(range(K)) - set(forget)
    # train splits partition train, test splits partition test
    train_ids = ids(s.val) + ids(s.forget) + ids(s.retain)
    assert sorted(train_ids) == list(range(200))
    assert sorted(ids(s.test_forget) + ids(s.test_retain)) == list(range(1000, 1080))
    # labels travel with their images
    for part in (s.forget, s.retain, s.val, s.test_forget, s.test_retain, s.shots):
        assert [i % K for i in ids(part)] == part.y.tolist()


def test_val_is_seeded_and_disjoint(data):
    train, test = data
    a = make_splits(train, test, (1,), K, val_size=30, seed=5)
    b = make_splits(train, test, (1,), K, val_size=30, seed=5)
    c = make_splits(train, test, (1,), K, val_size=30, seed=6)
    assert len(a.val) == 30
    assert ids(a.val) == ids(b.val) and ids(a.shots) == ids(b.shots)
    assert set(ids(a.val)) != set(ids(c.val))
    assert not set(ids(a.val)) & (set(ids(a.forget)) | set(ids(a.retain)))
    assert set(ids(a.val_forget)) | set(ids(a.val_retain)) == set(ids(a.val))
    assert set(a.val_forget.y.tolist()) <= {1} and 1 not in a.val_retain.y.tolist()


def test_val_size_as_fraction(data):
    train, test = data
    assert len(make_splits(train, test, (1,), K, val_size=0.25).val) == 50
    with pytest.raises(ValueError, match="val_size"):
        make_splits(train, test, (1,), K, val_size=200)


@pytest.mark.parametrize("forget", [(2,), (0, 3)])
def test_shots_are_k_per_class_from_forget(data, forget):
    train, test = data
    s = make_splits(train, test, forget, K, val_size=20, shots=4, seed=1)
    assert len(s.shots) == 4 * len(forget)
    for c in forget:
        assert (s.shots.y == c).sum() == 4
    shot_ids = ids(s.shots)
    assert len(set(shot_ids)) == len(shot_ids)
    assert set(shot_ids) <= set(ids(s.forget))


def test_shots_exceeding_pool(data):
    train, test = data
    with pytest.raises(ValueError, match="shots=60"):
        make_splits(train, test, (1,), K, val_size=20, shots=60)


@pytest.mark.parametrize(
    "forget, match",
    [
        ((4,), "forget class 4 out of range"),
        ((-1,), "forget class -1 out of range"),
        ((1, 9), "forget class 9"),
        ((2, 2), r"\[2, 2\].*duplicates"),
        ((0, 1, 2, 3), "cover all 4 classes"),
        ((), "empty"),
    ],
)
def test_forget_classes_validated(data, forget, match):
    train, test = data
    with pytest.raises(ValueError, match=match):
        make_splits(train, test, forget, K)


def test_synthetic_is_seeded_and_balanced():
    train, test = synthetic()
    train2, _ = synthetic()
    assert torch.equal(train.x, train2.x) and torch.equal(train.y, train2.y)
    assert not torch.equal(synthetic(seed=1)[0].x, train.x)
    assert train.x.shape == (6 * 320, 1, 16, 16) and test.x.shape == (6 * 32, 1, 16, 16)
    assert torch.bincount(train.y).tolist() == [320] * 6
    with pytest.raises(ValueError, match="1..6 classes"):
        synthetic(num_classes=7)


def test_synthetic_pairs_share_an_orientation_and_differ_in_period():
    """Where each class's power lies: on the vertical-frequency axis (horizontal stripes), the
    horizontal one (vertical stripes) or off both (checks); and at which spatial frequency."""
    train, _ = synthetic()
    x = train.x.float().squeeze(1) / 255
    power = torch.fft.fft2(x - x.mean((1, 2), keepdim=True)).abs().pow(2)
    f = torch.fft.fftfreq(16) * 16  # cycles per image
    fy, fx = f.view(-1, 1).expand(16, 16), f.view(1, -1).expand(16, 16)
    radius = (fy**2 + fx**2).sqrt()
    share, mean_radius = [], []
    for c in range(6):
        p = power[train.y == c].mean(0)
        share.append(
            torch.stack([p[fx == 0].sum(), p[fy == 0].sum(), p[(fx != 0) & (fy != 0)].sum()]) / p.sum()
        )
        mean_radius.append(float((p * radius).sum() / p.sum()))
    for c in range(6):
        partner = c ^ 1
        # the pair's orientation, shared by the partner, not by the other pairs
        assert int(share[c].argmax()) == c // 2 and share[c].max() > 0.8, (c, share[c])
        assert (share[c] - share[partner]).abs().max() < 0.05, (c, share[c], share[partner])
        others = [k for k in range(6) if k // 2 != c // 2]
        assert all((share[c] - share[k]).abs().max() > 0.5 for k in others), c
    # period 4 (16/4 = 4 cycles per image along the stripes' axis) above period 6 (~2.7 cycles)
    for k in range(3):
        assert mean_radius[2 * k] > mean_radius[2 * k + 1] + 0.8, mean_radius


def test_augment_identity_without_pad_and_flip():
    x = torch.rand(5, 3, 6, 6)
    assert torch.equal(augment(x, 0, False, torch.Generator().manual_seed(0)), x)


def test_augment_crops_and_flips():
    x = torch.rand(64, 2, 5, 7)
    pad = 2
    out = augment(x, pad, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    flipped = 0
    for i in range(len(x)):
        crops = [
            (padded[i, :, dy : dy + 5, dx : dx + 7], f)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for f in (False, True)
        ]
        matches = [f for c, f in crops if torch.equal(out[i], c.flip(2) if f else c)]
        assert matches, f"image {i} is not a padded crop (optionally flipped) of its input"
        flipped += all(matches)
    assert 0 < flipped < len(x)  # some flipped, some not
    assert not torch.equal(out, x)


def test_augment_is_seeded():
    x = torch.rand(8, 1, 6, 6)
    a = augment(x, 1, True, torch.Generator().manual_seed(3))
    b = augment(x, 1, True, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("n, bs", [(10, 3), (9, 3), (2, 5)])
def test_batches_cover_all_indices(n, bs):
    plain = list(batches(n, bs))
    assert torch.cat(plain).tolist() == list(range(n))
    assert all(len(b) == bs for b in plain[:-1])
    shuffled = torch.cat(list(batches(n, bs, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert sorted(shuffled.tolist()) == list(range(n))


def test_batches_shuffle_and_drop_last():
    order = torch.cat(list(batches(50, 7, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert order.tolist() != list(range(50))
    dropped = list(batches(10, 3, drop_last=True))
    assert [len(b) for b in dropped] == [3, 3, 3]
    assert [len(b) for b in batches(2, 5, drop_last=True)] == [2]  # fewer than a batch: keep it
