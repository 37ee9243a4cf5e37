"""Training and model files: `fit` (the DDP-aware loop), `inference` (logits and features of a model
on the splits), `zoo` (the cache of original and retrained reference models), `checkpoint` and
`foreign` (safetensors files and other people's checkpoints), `speed`, `device`, `distributed`.

Imports data, models and functional; never methods, evaluation or anything above them.
"""
