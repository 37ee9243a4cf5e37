"""spotter: class-level machine unlearning, with over-unlearning (OU@ε) and the prototypical
relearning attack (PRA) as first-class measures (Ha, Park, Yoon, ICML 2026, arXiv 2506.01318)."""

__version__ = "0.1.0"
