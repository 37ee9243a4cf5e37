"""Write scikit-learn's handwritten digits (real 8x8 grey scans, 1797 images, 10 classes) as an
image folder, the all-class issue's second dataset that nobody tuned on:

    python benchmarks/digits_folder.py runs/digits          # -> runs/digits/{train,test}/<digit>/*.png
    spotter bench benchmarks/digits_classes.toml --out benchmarks/results/digits_classes

Images are upscaled to 16x16 (bilinear) so the CIFAR-style ResNet keeps a spatial map after its
downsampling; 20% of each class (seeded) is the test split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

SIZE = 16
TEST_SHARE = 0.2


def write_folder(out: Path, seed: int = 0) -> dict[str, int]:
    digits = load_digits()
    x = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    x = torch.nn.functional.interpolate(x, size=SIZE, mode="bilinear", align_corners=False)
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "test": 0}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == c))
        n_test = round(TEST_SHARE * len(idx))
        for split, part in (("test", idx[:n_test]), ("train", idx[n_test:])):
            folder = out / split / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                Image.fromarray(pixels[i], mode="L").save(folder / f"{i:04d}.png")
            counts[split] += len(part)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (train/ and test/ inside)")
    args = parser.parse_args(argv)
    counts = write_folder(args.out)
    print(f"wrote {counts['train']} train and {counts['test']} test images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
