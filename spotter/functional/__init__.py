"""Pure measure and loss functions on tensors; imports only torch.

`losses` (masked distillation, dispersion, the simulated attack), `prototype` (the rows PRA writes
into a head), `perturb` (PGD and Gaussian neighbourhoods), `metrics` (accuracy, OU@ε's divergence,
dispersion score) and `measures` (the registry of every reported measure: title, direction, unit).
Methods and evaluation both build on these; nothing here trains a model or reads a file.
"""
