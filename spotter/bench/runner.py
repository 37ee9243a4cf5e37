"""`spotter bench`: a spec's jobs -> one JSON row per job appended to OUT/results.jsonl.

Each job is (forget set, replicate, method). Its id hashes its whole config, so a re-run skips the
jobs already in results.jsonl: a crash or Ctrl-C loses at most the jobs in flight. Original and
retrained models come from spotter.training.zoo's cache (trained once per dataset, model, recipe, forget set
and seed; a file lock stops two workers training the same one). A job's numbers depend only on its
own config and seeds (training, unlearning and evaluation seeds are separate), never on which
worker or in which order it ran, so `--workers` and `--devices` only change the wall time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spotter.bench.job import Context, run_job
from spotter.bench.provenance import code_digests, latest_per_job, stale_reason
from spotter.bench.spec import Spec, job_id, load_spec
from spotter.bench.store import append_row
from spotter.config import apply_overrides
from spotter.data import resolve_root
from spotter.io import atomic_write, check_writable, git_revision
from spotter.report.tables import RESULTS, read_rows

log = logging.getLogger("spotter")

CONTEXT_KEYS = ("dataset", "data", "model", "train", "eval", "audit")


@dataclass
class BenchResult:
    total: int  # jobs in the spec
    skipped: int  # already in results.jsonl
    ran: int  # finished now
    failed: list[str]  # labels of jobs that raised (rerun to retry)
    seconds: float
    out: Path
    stale: list[str]  # committed rows whose code changed since (rerun with rerun_stale)
    unverified: int  # committed rows written before code digests were recorded
    diverged: list[str] = dataclasses.field(default_factory=list)  # jobs run now whose method diverged


def context_key(config: dict[str, Any]) -> str:
    return job_id({k: config[k] for k in CONTEXT_KEYS})


@dataclass(frozen=True)
class Selection:
    """A part of a spec's jobs, so that one session can finish chosen contexts or rows of a grid
    that needs several: method labels, forget sets and training seeds (None: every one)."""

    labels: tuple[str, ...] | None = None
    forget: tuple[tuple[int, ...], ...] | None = None
    seeds: tuple[int, ...] | None = None

    def jobs(self, spec: Spec) -> list[dict]:
        """The spec's jobs in this selection; a value the spec does not have is an error that names
        the spec's values."""
        jobs = spec.jobs
        wanted = (
            ("method label", self.labels, lambda c: c["label"]),
            ("forget set", self.forget, lambda c: tuple(c["data"]["forget"])),
            ("training seed", self.seeds, lambda c: c["train"]["seed"]),
        )
        for name, values, key in wanted:
            if values is None:
                continue
            have = list(dict.fromkeys(key(j["config"]) for j in spec.jobs))
            unknown = [v for v in values if v not in have]
            if unknown:
                shown = ", ".join(_show(v) for v in have)
                raise ValueError(f"{spec.name} has no {name} {_show(unknown[0])}; it has: {shown}")
            jobs = [j for j in jobs if key(j["config"]) in values]
        return jobs


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@dataclass
class ContextStatus:
    forget: list[int]
    seed: int
    fresh: list[str]
    stale: list[str]  # "label: reason"
    missing: list[str]
    unverified: list[str]  # rows from before code digests: counted as done, their code not checked
    diverged: list[str] = dataclasses.field(default_factory=list)  # fresh rows of a method that diverged


def bench_status(
    spec_path: str | Path, out: str | Path, selection: Selection | None = None
) -> list[ContextStatus]:
    """Per context (forget set, training seed) of the spec: which jobs have a fresh committed row,
    a stale one (the code that computed it changed) or none. Runs and writes nothing."""
    spec = load_spec(spec_path)
    jobs = (selection or Selection()).jobs(spec)
    results = Path(out) / RESULTS
    by_id = {r["job"]: r for r in latest_per_job(_rows(Path(out)))} if results.exists() else {}
    status: dict[str, ContextStatus] = {}
    for j in jobs:
        c = j["config"]
        entry = status.setdefault(
            context_key(c), ContextStatus(list(c["data"]["forget"]), c["train"]["seed"], [], [], [], [])
        )
        row = by_id.get(j["id"])
        reason = stale_reason(row) if row is not None else None
        if row is None:
            entry.missing.append(c["label"])
        elif reason == "unverified":
            entry.unverified.append(c["label"])
        elif reason is not None:
            entry.stale.append(f"{c['label']}: {reason}")
        else:
            entry.fresh.append(c["label"])
            if row.get("diverged"):
                entry.diverged.append(c["label"])
    return list(status.values())


def assign(
    jobs: list[dict], workers: int, started: set[str] | frozenset[str] = frozenset()
) -> list[list[dict]]:
    """Split jobs over workers, keeping jobs that share original/retrained/neighbourhoods together.
    Contexts in `started` (context keys with committed rows) come first: their models are likely
    still in the cache, and a grid that spans sessions then finishes whole contexts, not a row of
    each."""
    groups: dict[str, list[dict]] = {}
    for job in jobs:
        groups.setdefault(context_key(job["config"]), []).append(job)
    pieces: list[list[dict]] = []
    per_group = max(1, math.ceil(workers / len(groups)))  # split groups only when there are few
    for group in groups.values():
        n = min(per_group, len(group))
        size = math.ceil(len(group) / n)
        pieces += [group[i : i + size] for i in range(0, len(group), size)]
    plans: list[list[dict]] = [[] for _ in range(workers)]

    def rank(piece: list[dict]) -> tuple[bool, int]:
        return context_key(piece[0]["config"]) not in started, -len(piece)

    for piece in sorted(pieces, key=rank):  # started contexts, then longest, onto the lightest worker
        min(plans, key=len).extend(piece)
    return [p for p in plans if p]


def run_bench(
    spec_path: str | Path,
    out: str | Path,
    workers: int = 1,
    devices: list[str] | None = None,
    cache_dir: str | None = None,
    rerun_stale: bool = False,
    selection: Selection | None = None,
) -> BenchResult:
    """Run every job of the spec (or of `selection`, a part of it) that results.jsonl does not hold
    yet (and, with `rerun_stale`, the jobs whose committed rows were computed by code that has
    changed since)."""
    spec = load_spec(spec_path)
    jobs = (selection or Selection()).jobs(spec)
    out = check_writable(out)
    t0 = time.time()
    atomic_write(out / "spec.toml", lambda tmp: Path(tmp).write_text(spec.text))
    ids = {j["id"] for j in jobs}
    committed = [r for r in latest_per_job(_rows(out)) if r.get("job") in ids]
    reasons = {r["job"]: stale_reason(r) for r in committed}
    stale = {k: v for k, v in reasons.items() if v not in (None, "unverified")}
    unverified = sum(v == "unverified" for v in reasons.values())
    _log_stale(committed, stale, unverified, rerun_stale)
    done = {r["job"] for r in committed} - (set(stale) if rerun_stale else set())
    todo = [j for j in jobs if j["id"] not in done]
    devices = devices or ["auto"]
    workers = max(1, workers, len(devices) if devices != ["auto"] else 1)
    part = f" (selected of {len(spec.jobs)})" if len(jobs) < len(spec.jobs) else ""
    log.info(
        "%s: %d jobs%s, %d already done, %d to run",
        spec.name,
        len(jobs),
        part,
        len(jobs) - len(todo),
        len(todo),
    )
    if todo:
        _preflight(spec)
        started = {context_key(r["config"]) for r in committed if r["job"] in done and "config" in r}
        plans = assign(todo, workers, started)
        if len(plans) == 1 and len(devices) == 1:
            run_jobs(plans[0], str(out), devices[0], cache_dir, spec.data_dir)
        else:
            _spawn(plans, out, devices, cache_dir, spec.data_dir)
    rows = _rows(out)
    finished = {r.get("job") for r in rows}
    if rerun_stale and stale:  # a rerun row replaced its stale row: keep one row per job
        fresh = {r["job"] for r in rows if r.get("job") in stale and stale_reason(r) is None}
        if fresh:
            text = "".join(json.dumps(r) + "\n" for r in latest_per_job(rows))
            atomic_write(out / RESULTS, lambda tmp: Path(tmp).write_text(text))
        stale = {k: v for k, v in stale.items() if k not in fresh}
    failed = [f"{j['config']['label']} (forget {j['config']['data']['forget']}, replicate {j['meta']['replicate']})" for j in todo if j["id"] not in finished or j["id"] in stale]  # fmt: skip
    by_id = {r["job"]: r for r in committed}
    stale_labels = [_describe(by_id[k], v) for k, v in stale.items()]
    todo_ids = {j["id"] for j in todo}
    diverged = [
        _describe(r, r["diverged"])
        for r in latest_per_job(rows)
        if r.get("diverged") and r.get("job") in todo_ids
    ]
    return BenchResult(
        len(jobs), len(jobs) - len(todo), len(todo) - len(failed), failed, time.time() - t0, out,
        stale_labels, unverified, diverged,
    )  # fmt: skip


def _rows(out: Path) -> list[dict[str, Any]]:
    """The committed rows, each with its id recomputed from its config by today's job_id (a row
    written before a config field existed keeps matching its job)."""
    rows = read_rows(out / RESULTS)
    for r in rows:
        if isinstance(r.get("config"), dict):
            r["job"] = job_id(r["config"])
    return rows


def _describe(row: dict[str, Any], reason: str) -> str:
    return f"{row.get('label')} (forget {row.get('forget_classes')}, seed {row.get('seeds', {}).get('train')}): {reason}"


def _log_stale(committed: list[dict], stale: dict[str, str], unverified: int, rerun: bool) -> None:
    if stale:
        by_id = {r["job"]: r for r in committed}
        names = "; ".join(_describe(by_id[k], v) for k, v in list(stale.items())[:5])
        more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
        action = "rerunning them" if rerun else "kept; `--rerun-stale` reruns exactly those"
        log.warning("%d committed row(s) are stale: %s%s (%s)", len(stale), names, more, action)
    if unverified:
        log.info(
            "%d committed row(s) predate code digests: their code cannot be checked (unverified)", unverified
        )


def _preflight(spec: Spec) -> None:
    """Fail before any work (and before spawning workers) when the data is missing."""
    dataset = spec.jobs[0]["config"]["dataset"]
    if dataset != "synthetic":
        resolve_root(dataset, spec.data_dir)


def _spawn(
    plans: list[list[dict]], out: Path, devices: list[str], cache_dir: str | None, data_dir: str | None
) -> None:
    ctx = torch.multiprocessing.get_context("spawn")
    threads = max(1, torch.get_num_threads() // len(plans))
    level = logging.getLogger().getEffectiveLevel()
    procs = []
    for i, plan in enumerate(plans):
        args = (plan, str(out), devices[i % len(devices)], cache_dir, data_dir, threads, level, i)
        procs.append(ctx.Process(target=_worker, args=args, daemon=False))
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise


def _worker(plan, out, device, cache_dir, data_dir, threads, level, index) -> None:  # noqa: ANN001
    torch.set_num_threads(threads)
    fmt = f"%(asctime)s [worker {index}] %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S")
    try:
        run_jobs(plan, out, device, cache_dir, data_dir)
    except KeyboardInterrupt:
        pass


def timed_against_retraining(config: dict[str, Any]) -> bool:
    """Rows whose time the time bar compares with retraining: unlearning runs, and the retrained
    reference (to compare the clock with a real training run where it was trained just now)."""
    return config["kind"] == "unlearn" or config["method"] == "retrained"


def _retrain_clock(config: dict[str, Any], ctx: Context) -> dict[str, float] | None:
    """The retrained model's recipe timed now, in this process (spotter/bench/retrain_clock.py);
    None when the clock itself fails (the row is kept either way)."""
    from spotter.bench.retrain_clock import retrain_estimate
    from spotter.training.fit import TrainConfig

    try:
        clock = retrain_estimate(
            ctx.spec, ctx.splits, apply_overrides(TrainConfig(), config["train"]), ctx.device
        )
    except Exception as err:  # noqa: BLE001 - an auxiliary timing must never cost the row
        log.warning("retrain clock failed (%s: %s); the row is kept without it", type(err).__name__, err)
        return None
    log.info(
        "retraining would take ~%.0fs now (%.3fs a step, %d steps)",
        clock["seconds"],
        clock["step_s"],
        clock["steps"],
    )
    return clock


def diverged_row(job: dict[str, Any], error: str) -> dict[str, Any]:
    """The row of an unlearning job whose loss went NaN or Inf: what identifies the job, the code
    that diverged, and why; no measures (the report lists it apart from its tables)."""
    c, meta = job["config"], job["meta"]
    return {
        "job": job["id"], "spec": meta["spec"], "label": c["label"], "method": c["method"], "kind": c["kind"],
        "replicate": meta["replicate"], "order": meta["order"], "dataset": c["dataset"],
        "forget_classes": c["data"]["forget"], "model": c["model"],
        "seeds": {"train": c["train"]["seed"], "unlearn": c.get("unlearn_seed"), "eval": c["eval"]["seed"]},
        "diverged": error, "code": code_digests(c["kind"], c["method"]), "config": c, "git": git_revision(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def weights_digest(model: torch.nn.Module) -> str:
    """A short fingerprint of a model's weights and buffers (every tensor of its state dict, by name)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_jobs(jobs: list[dict], out: str, device: str, cache_dir: str | None, data_dir: str | None) -> None:
    """Run jobs in order in this process, appending one row per finished job; a failing job is
    logged and left out of results.jsonl (a re-run retries it)."""
    from spotter.training.fit import TrainingDiverged

    # each row records digests of the code that computed it; this process runs the code it imported
    # when the spec was loaded, so the digests are read now, not when a row is written (an edit made
    # while a long run goes on must not be credited to rows its old code computed)
    for job in jobs:
        code_digests(job["config"]["kind"], job["config"]["method"])
    contexts: dict[str, Context] = {}
    for i, job in enumerate(jobs, 1):
        key = context_key(job["config"])
        try:
            if key not in contexts:
                contexts.clear()  # one context at a time: jobs arrive grouped by context
                contexts[key] = Context(job["config"], device, cache_dir, data_dir)
                # which trained models the context's rows rest on: an emptied cache is refilled by
                # training again, not bit-reproducibly across thread counts (hashed once per context)
                fingerprints = {k: weights_digest(m) for k, m in getattr(contexts[key], "models", {}).items()}
            row = run_job(job, contexts[key], Path(out))
        except (KeyboardInterrupt, SystemExit):
            raise
        except (FloatingPointError, TrainingDiverged) as err:
            if key in contexts and job["config"]["kind"] == "unlearn":
                # the method diverged at its settings: a result (the same seeds diverge again), kept
                # as a row without numbers so the grid can finish; stale like any row if its code changes
                append_row(Path(out) / RESULTS, diverged_row(job, str(err)))
                log.error(
                    "job %s (%s) diverged: %s; recorded as diverged", job["id"], job["config"]["label"], err
                )
            else:
                log.error(
                    "job %s (%s) failed: %s; rerun the bench to retry it",
                    job["id"],
                    job["config"]["label"],
                    err,
                )
            continue
        except (ValueError, OSError) as err:  # one line, no traceback
            log.error(
                "job %s (%s) failed: %s; rerun the bench to retry it", job["id"], job["config"]["label"], err
            )
            continue
        except Exception:
            log.exception(
                "job %s (%s) failed; rerun the bench to retry it", job["id"], job["config"]["label"]
            )
            continue
        row["git"] = git_revision()
        kind, method = job["config"]["kind"], job["config"]["method"]
        if "code" in row and row["code"] != code_digests.__wrapped__(kind, method):
            log.warning(
                "the code of %s changed on disk during this run; its row keeps the digests of the code "
                "this process runs (it will read as stale)",
                job["config"]["label"],
            )
        if timed_against_retraining(job["config"]):
            row["retrain_clock"] = _retrain_clock(job["config"], contexts[key])
        row["model_digests"] = fingerprints
        append_row(Path(out) / RESULTS, row)
        c = job["config"]
        log.info(
            "[%d/%d] %s, forget %s, seed %d: done in %.0fs (job %s)",
            i, len(jobs), c["label"], c["data"]["forget"], c["train"]["seed"], row["wall_s"], job["id"],
        )  # fmt: skip
