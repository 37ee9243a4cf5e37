"""Measures of a model against the original: `evaluator` (accuracies, OU@ε, PRA, dispersion: the
foundation row), `pra` (the prototypical relearning attack over α, K and row variants), `relearn`
(few-shot fine-tuning and relearn time), `mia` (membership inference), `faces` (identity-level
verification).

Reads models through `spotter.training.inference`; may import methods' data types but never
trains an unlearning method, and never imports audit, bench, report or cli.
"""
