"""Unlearn a class from your own model and data, then audit it.

Your data: scikit-learn's 1797 handwritten digits (8x8 grey scans) held as numpy arrays. Your model:
a small CNN, trained here for a few seconds as a stand-in for one you already have. Class 3 is
forgotten retain-free (no retain data) and the audit report is written to the folder given
(default runs/own_data):  python examples/own_data_and_model.py [OUT]
"""

import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import spotter

out = sys.argv[1] if len(sys.argv) > 1 else "runs/own_data"
digits = load_digits()  # your data: numpy images (N, 8, 8) with values 0..16, labels 0..9
images, labels = (digits.images * 255 / 16).round().astype(np.uint8), digits.target
order = np.random.default_rng(0).permutation(len(labels))
train = spotter.as_tensorset(images[order[:1400]], labels[order[:1400]])
test = spotter.as_tensorset(images[order[1400:]], labels[order[1400:]])
info = spotter.describe(train, "digits")

torch.manual_seed(0)
net = nn.Sequential(  # your model: any nn.Module whose last layer is an nn.Linear
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, info.num_classes),
)  # fmt: skip
model = spotter.adapt(net, mean=info.mean, std=info.std)
recipe = spotter.TrainConfig(epochs=15, batch_size=64, lr=0.05, pad=1, flip=False, select="last")
spotter.fit(model, train, None, recipe)  # a stand-in for the model you already trained

splits = spotter.make_splits(train, test, forget_classes=[3], num_classes=info.num_classes)
unlearned = spotter.unlearn(model, splits, "spotter_auto", protocol="retain-free")
evaluate = spotter.Evaluator(model, splits)
for name, row in (("original", evaluate(model)), ("unlearned", evaluate(unlearned))):
    forget, retain, attacked = row["test_forget_acc"], row["test_retain_acc"], row["pra_forget_acc"]
    print(f"{name:9s}  forget acc {forget:5.1f}%  retain acc {retain:5.1f}%  after PRA {attacked:5.1f}%")
report = spotter.write_report(spotter.audit(model, unlearned, splits), out)
print(f"done: class 3 unlearned and audited, report in {report['md']}")
