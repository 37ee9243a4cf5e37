"""Benchmarks: a TOML spec -> jobs -> one JSON row per job, resumable and safe to run in parallel.

`spec` parses and checks a spec into jobs (each id a hash of its config); `store` appends rows
atomically; `job` trains or fetches the models of one job and measures them through `evaluation`
and the audit's checks; `runner` runs the jobs not yet in the store, on several workers or devices.
Rows are rendered by `spotter.report`; nothing here imports `cli`.
"""

from spotter.bench.runner import BenchResult, run_bench
from spotter.bench.spec import Spec, SpecError, load_spec

__all__ = ["BenchResult", "Spec", "SpecError", "load_spec", "run_bench"]
