"""A smoke benchmark run through the CLI, shared by test_bench.py and test_report.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from spotter import cli

torch.set_num_threads(1)

SMOKE = Path(__file__).resolve().parent.parent / "benchmarks" / "smoke.toml"
# metrics compared between runs (every scalar and curve the report draws)
METRICS = (
    "forget_acc", "retain_acc", "test_forget_acc", "test_retain_acc", "test_acc", "ou_pgd", "ou_pgd_away",
    "ou_gaussian", "pra_forget_acc", "pra_alpha", "pra_curve", "pra_shots", "ou_sweep", "dispersion",
    "mia_efficacy", "entropy_auroc", "history",
)  # fmt: skip


@dataclass
class Run:
    out: Path
    cache: Path

    @property
    def results(self) -> Path:
        return self.out / "results.jsonl"

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.results.read_text().splitlines()]


def bench(out: Path, cache: Path, *extra: str, spec: Path = SMOKE) -> int:
    return cli.main(["-q", "bench", str(spec), "--out", str(out), "--cache-dir", str(cache), *extra])


def smoke_run(tmp_path_factory) -> Run:  # noqa: ANN001
    base = tmp_path_factory.mktemp("smoke")
    run = Run(base / "run", base / "cache")
    assert bench(run.out, run.cache) == 0
    return run


def metrics(rows: list[dict]) -> dict[str, dict]:
    return {r["job"]: {k: r.get(k) for k in METRICS} for r in rows}
