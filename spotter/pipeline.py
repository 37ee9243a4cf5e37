"""The end-to-end jobs behind the CLI: data + models + method + evaluation, as plain functions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spotter import methods
from spotter.checkpoint import atomic_write, save_model
from spotter.data import DatasetInfo, Splits, load, load_surrogate, make_splits
from spotter.device import resolve_device
from spotter.evaluate import EvalConfig, Evaluator
from spotter.models import ModelSpec, check_model_name, default_width
from spotter.table import markdown
from spotter.train import TrainConfig
from spotter.zoo import default_cache_dir, reference_model

log = logging.getLogger("spotter")


@dataclass
class DataConfig:
    """Which data and which classes to forget."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    forget: tuple[int, ...] = (0,)
    val_size: int = 5000  # validation images carved from train (seeded by split_seed)
    shots: int = 5  # attacker's K per forget class (method.md §4)
    split_seed: int = 0
    # Out-of-distribution images for methods that read "surrogate" (SCAR): another dataset's
    # training images, converted to this dataset's channels and size. None: SCAR's own fallback.
    surrogate: str | None = None
    surrogate_dir: str | None = None
    surrogate_size: int = 5000  # SCAR's fallback size too (methods/scar.py)

    def split_key(self) -> dict[str, Any]:
        """What decides the splits (and so every reference model's measures); not the surrogate."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("surrogate")}


def prepare(cfg: DataConfig) -> tuple[Splits, DatasetInfo]:
    train, test, info = load(cfg.dataset, cfg.data_dir)
    val_size = cfg.val_size if cfg.val_size < len(train) // 2 else len(train) // 10
    splits = make_splits(train, test, cfg.forget, info.num_classes, val_size, cfg.shots, cfg.split_seed)
    if cfg.surrogate:
        sur = load_surrogate(cfg.surrogate, cfg.surrogate_dir, info, cfg.surrogate_size, cfg.split_seed)
        splits = replace(splits, surrogate=sur)
    return splits, info


def model_spec(info: DatasetInfo, name: str = "resnet18", width: int | None = None) -> ModelSpec:
    check_model_name(name)
    return ModelSpec(name, info.num_classes, info.channels, width or default_width(name), info.mean, info.std)


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def metric_code_digest() -> str:
    """Changes whenever the code that computes a measure changes (stale cached rows are ignored)."""
    from spotter import attacks, evaluate, losses, metrics, perturb

    return digest([file_digest(m.__file__) for m in (attacks, evaluate, losses, metrics, perturb)])


def cached_json(path: Path, compute: Any) -> Any:
    """compute() once; later calls read the JSON file at `path`."""
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("ignoring unreadable cache file %s", path)
    value = compute()
    write_json(path, value)
    return value


def write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=False, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def check_writable(folder: str | Path) -> Path:
    """`folder`, created if needed, after proving a file can be written in it (fails before any work)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is a file; give a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".spotter-write-test-{os.getpid()}"  # one per process (torchrun ranks)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"output folder {folder} cannot be written: {err.strerror or err}") from None
    return folder


def check_output_file(path: str | Path) -> Path:
    """`path` as a file to write: not a folder, in a writable folder (checked before any work)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; give a file path, e.g. {path / 'model.safetensors'}")
    check_writable(path.parent)
    return path


@dataclass
class DemoConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: str = "resnet18"
    width: int = 16  # CPU-sized; 64 is the paper's model
    train: TrainConfig = field(default_factory=TrainConfig)
    method: str = "spotter"
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    device: str = "auto"
    seed: int = 0  # unlearning seed
    cache_dir: str | None = None
    out: str = "runs/demo"


def run_demo(cfg: DemoConfig) -> list[dict[str, Any]]:
    """Original + retrained (cached) + one method, evaluated side by side; writes results.json/.md."""
    out = check_writable(cfg.out)
    device = resolve_device(cfg.device)
    preset = cfg.preset or methods.default_preset(cfg.method, cfg.data.dataset)
    if preset is not None and cfg.preset is None:
        log.info(
            "%s: using the %r preset shipped for %s (--preset authors for the paper's values; "
            "`spotter list presets` shows them all)",
            cfg.method,
            preset,
            cfg.data.dataset,
        )
    method_cfg = methods.make_config(cfg.method, cfg.overrides, preset)
    if hasattr(method_cfg, "seed"):
        method_cfg = type(method_cfg)(**{**asdict(method_cfg), "seed": cfg.seed})
    splits, info = prepare(cfg.data)
    spec = model_spec(info, cfg.model, cfg.width)
    t_start = time.time()
    original, meta_o = reference_model("original", info.name, splits, spec, cfg.train, cfg.cache_dir, device)
    retrained, meta_r = reference_model(
        "retrained", info.name, splits, spec, cfg.train, cfg.cache_dir, device
    )
    # Neighbourhoods and the reference models' rows are deterministic functions of the model
    # files, the split, the evaluation settings and the metric code: cache them, so a re-run (or a
    # new method setting) only pays for the unlearned model.
    evals = Path(cfg.cache_dir or default_cache_dir()) / "evals"
    base_key = [file_digest(meta_o["path"]), asdict(cfg.eval), cfg.data.split_key(), metric_code_digest()]
    evaluator = Evaluator(original, splits, cfg.eval, evals / f"neighbours-{digest(base_key)}.safetensors")
    t0 = time.time()
    unlearned = methods.run(cfg.method, original, splits, method_cfg)
    unlearn_s = time.time() - t0
    common = {
        "dataset": info.name,
        "forget_classes": list(splits.forget_classes),
        "arch": spec.to_dict(),
        "train": asdict(cfg.train),
        "eval": asdict(cfg.eval),
        "git": git_revision(),
    }
    rows = []
    for name, model, seconds, extra in (
        ("original", original, meta_o.get("train_seconds"), {"checkpoint": meta_o["path"]}),
        ("retrained", retrained, meta_r.get("train_seconds"), {"checkpoint": meta_r["path"]}),
        (
            cfg.method,
            unlearned,
            unlearn_s,
            {"method_config": asdict(method_cfg), "history": getattr(unlearned, "unlearn_history", None)},
        ),
    ):
        t_eval = time.time()
        if name in ("original", "retrained"):
            key = digest([*base_key, file_digest(extra["checkpoint"])])
            measures = cached_json(evals / f"row-{name}-{key}.json", lambda m=model: evaluator(m))
        else:
            measures = evaluator(model)
        row = {"model": name, **measures, "time_s": seconds, **extra, **common}
        log.info("evaluated %s in %.0fs", name, time.time() - t_eval)
        rows.append(row)
    # the unlearned model too, so `spotter eval` / `spotter audit` can probe it later
    save_model(
        out / f"{cfg.method}.safetensors",
        unlearned,
        spec,
        {
            "method": cfg.method,
            "method_config": asdict(method_cfg),
            "forget_classes": list(splits.forget_classes),
            "unlearn_seconds": unlearn_s,
        },
    )
    write_json(out / "results.json", rows)
    table = markdown(rows) + "\n"
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(table))
    log.info("demo finished in %.0fs; results in %s", time.time() - t_start, out)
    return rows
