"""Benchmark specs: a TOML file (stdlib tomllib) -> jobs, each a plain dict whose id hashes its config.

A spec names the dataset, model, training recipe, forget-class sets, seeds, methods with overrides
and the evaluation settings (see benchmarks/smoke.toml). Every error names the spec line it comes
from: `benchmarks/x.toml:12: unknown method 'foo'; valid choices: ...`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spotter import methods
from spotter.audit.context import AuditConfig
from spotter.config import apply_overrides
from spotter.data import DATASETS, INFO, check_forget_classes
from spotter.evaluation.evaluator import EvalConfig
from spotter.io import digest
from spotter.models import check_model_name, default_width
from spotter.training.fit import TrainConfig

TOP_KEYS = (
    "name", "dataset", "data_dir", "model", "width", "recipe", "forget", "seeds", "references",
    "features", "features_per_class", "train", "data", "eval", "audit", "methods", "replicates",
)  # fmt: skip
DATA_KEYS = ("val_size", "shots", "split_seed", "surrogate", "surrogate_dir", "surrogate_size")
AUDIT_KEYS = ("ou_eps", "ou_limit", "pra_shots", "pra_variants", "pra_curve_shots", "pra_seed", "near_k")
AUDIT_KEYS += ("mia_limit", "seed")
METHOD_KEYS = ("method", "preset", "protocol")  # reserved in a [methods.LABEL] table
REFERENCES = ("original", "retrained")
RECIPES = ("fast", "paper")


class SpecError(ValueError):
    """A bad spec; the message starts with `path:line:`."""


@dataclass
class Spec:
    name: str
    path: str
    text: str
    jobs: list[dict[str, Any]]
    data_dir: str | None


def _header(line: str) -> tuple[str, ...] | None:
    m = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
    if not m:
        return None
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', m.group(1))
    return tuple(next(p for p in part if p) for part in parts)


def line_of(text: str, table: tuple[str, ...] = (), key: str | None = None) -> int:
    """1-based line of `key` in `[table]` (or of the table's header, or of an inline `key = {`)."""
    current: tuple[str, ...] = ()
    header_line = 0
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    parent_line = 0
    for i, line in enumerate(text.splitlines(), 1):
        head = _header(line)
        if head is not None:
            current = head
            header_line = i if head == table else header_line
            continue
        if pattern and current == table and pattern.match(line):
            return i
        if table and current == table[:-1] and re.match(rf"^\s*[\"']?{re.escape(table[-1])}[\"']?\s*=", line):
            parent_line = i
    return header_line or parent_line or 1


class _Ctx:
    """Raises SpecError at the line of the value being checked."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, message: str, table: tuple[str, ...] = (), key: str | None = None) -> SpecError:
        return SpecError(f"{self.path}:{line_of(self.text, table, key)}: {message}")

    def config(self, base: Any, values: dict, table: tuple[str, ...], check: Any = None) -> Any:
        for key, value in values.items():  # one key at a time, so the error names its line
            try:
                base = set_fields(base, {key: value})
                if check is not None:
                    check(base)
            except ValueError as err:
                raise self.fail(str(err), table, key) from None
        return base


def set_fields(cfg: Any, values: dict[str, Any]) -> Any:
    """`apply_overrides`, also into nested dataclass fields given as tables (retrain's `train`)."""
    nested = {
        k: v
        for k, v in values.items()
        if isinstance(v, dict) and dataclasses.is_dataclass(getattr(cfg, k, None))
    }
    cfg = apply_overrides(cfg, {k: v for k, v in values.items() if k not in nested})
    for k, v in nested.items():
        cfg = dataclasses.replace(cfg, **{k: set_fields(getattr(cfg, k), v)})
    return cfg


FORGET_HINT = "class ids like [0, 3], [[0], [2, 4]] or { classes = [0], replicates = 3 }"


def _forget_sets(c: _Ctx, value: Any, num_classes: int, replicates: int) -> list[tuple[tuple[int, ...], int]]:
    """(forget set, how many replicates it runs): a table entry sets its own count."""
    sets = value if isinstance(value, list) else [value]
    sets = [s if isinstance(s, list | dict) else [s] for s in sets]
    if not sets:
        raise c.fail(f"forget: empty; give {FORGET_HINT}", (), "forget")
    out = []
    for s in sets:
        count = replicates
        if isinstance(s, dict):
            bad = sorted(set(s) - {"classes", "replicates"})
            count = s.get("replicates", replicates)
            if bad or not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise c.fail(f"forget: expected {FORGET_HINT}, got {s!r}", (), "forget")
            s = s.get("classes", [])
            s = s if isinstance(s, list) else [s]
        if not s or not all(isinstance(v, int) and not isinstance(v, bool) for v in s):
            raise c.fail(f"forget: expected {FORGET_HINT}, got {value!r}", (), "forget")
        if not num_classes:  # an image folder: the class count is known only when it is loaded
            out.append((tuple(sorted(set(s))), count))
            continue
        try:
            out.append((check_forget_classes(s, num_classes), count))
        except ValueError as err:
            raise c.fail(str(err), (), "forget") from None
    return out


def _seeds(c: _Ctx, value: Any) -> tuple[list[int], list[int], int | None]:
    """(train seeds, unlearn seeds, eval seed): replicate i trains with train[i], unlearns with unlearn[i]."""
    if isinstance(value, list):
        value = {"train": value}
    if not isinstance(value, dict) or "train" not in value:
        raise c.fail("seeds: expected a list like [0, 1, 2] or a table with train = [...]", (), "seeds")
    bad = sorted(set(value) - {"train", "unlearn", "eval"})
    if bad:
        raise c.fail(f"unknown key {bad[0]!r} in seeds; valid keys: train, unlearn, eval", ("seeds",), bad[0])
    train, unlearn = value["train"], value.get("unlearn", value["train"])
    for key, seq in (("train", train), ("unlearn", unlearn)):
        if not isinstance(seq, list) or not seq or not all(isinstance(s, int) for s in seq):
            raise c.fail(f"seeds.{key}: expected a non-empty list of integers, got {seq!r}", ("seeds",), key)
    if len(unlearn) != len(train):
        raise c.fail("seeds.unlearn must have one seed per training seed", ("seeds",), "unlearn")
    eval_seed = value.get("eval")
    if eval_seed is not None and not isinstance(eval_seed, int):
        raise c.fail(f"seeds.eval: expected one integer, got {eval_seed!r}", ("seeds",), "eval")
    return train, unlearn, eval_seed


def _method_entries(c: _Ctx, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, dict) or not raw:
        raise c.fail("methods: expected [methods.NAME] tables, e.g. [methods.finetune]", (), "methods")
    out = []
    for label, values in raw.items():
        table = ("methods", label)
        if not isinstance(values, dict):
            raise c.fail(f"methods.{label}: expected a table of overrides", table)
        if label in REFERENCES:
            raise c.fail(f"{label!r} is a reference row, added by references = true", table)
        _check_types(c, values, table, {"method": ("str",), "preset": ("str",), "protocol": ("str",)})
        name = values.get("method", label)
        preset, protocol = values.get("preset"), values.get("protocol", "full")
        overrides = {k: v for k, v in values.items() if k not in METHOD_KEYS}
        try:
            methods.get(name)
            base = methods.make_config(name, None, preset)
        except ValueError as err:
            raise c.fail(str(err), table, "method" if "method" in values else None) from None
        cfg = c.config(base, overrides, table, methods.check_config)
        if protocol not in methods.PROTOCOLS:
            raise c.fail(
                f"unknown protocol {protocol!r}; valid choices: {', '.join(methods.PROTOCOLS)}",
                table,
                "protocol",
            )
        if protocol == "retain-free" and methods.Access(tuple(methods.get(name).NEEDS)).reads_retain:
            raise c.fail(
                f"method {name!r} reads retain data; the retain-free protocol forbids it", table, "protocol"
            )
        out.append({"label": label, "method": name, "preset": preset, "protocol": protocol, "cfg": cfg})
    return out


def _dataset(c: _Ctx, raw: dict) -> str:
    name = raw.get("dataset")
    if name not in INFO:
        raise c.fail(
            f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)} "
            "(a dataset missing here needs its loader in spotter.data before this spec can run)",
            (),
            "dataset",
        )
    return name


def _table(c: _Ctx, raw: dict, key: str, valid: tuple[str, ...] | None = None) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise c.fail(f"{key}: expected a table [{key}]", (), key)
    for k in value:
        if valid is not None and k not in valid:
            raise c.fail(f"unknown key {k!r} in [{key}]; valid keys: {', '.join(valid)}", (key,), k)
    return value


def _check_types(c: _Ctx, raw: dict, table: tuple[str, ...], types: dict[str, tuple]) -> None:
    """Each present key of `raw` has its expected kind: ("str",), ("bool",) or ("int", minimum)."""
    for key, (kind, *low) in types.items():
        if key not in raw:
            continue
        value = raw[key]
        name = ".".join((*table, key))
        if kind == "str" and not isinstance(value, str):
            raise c.fail(f"{name}: expected a string, got {value!r}", table, key)
        if kind == "bool" and not isinstance(value, bool):
            raise c.fail(f"{name}: expected true or false, got {value!r}", table, key)
        if kind == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < low[0]):
            raise c.fail(f"{name}: expected an integer >= {low[0]}, got {value!r}", table, key)


def job_id(config: dict[str, Any]) -> str:
    """The job's identity: a hash of its config without the fields left at their defaults, so a
    field added later with a default that keeps the old behaviour does not orphan committed rows
    (a changed default is a code change: the row's code digests name it stale, see provenance)."""
    return digest(canonical(config), 16, default=list)


def canonical(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with every train/eval/audit/method field equal to its current default dropped."""
    out = dict(config)
    for key, default in (("train", TrainConfig()), ("eval", EvalConfig()), ("audit", AuditConfig())):
        if isinstance(out.get(key), dict):
            out[key] = _without_defaults(out[key], default)
    if isinstance(out.get("method_config"), dict):
        try:
            default = methods.make_config(out["method"])
        except (ValueError, KeyError):  # a method since removed: keep its config whole
            return out
        out["method_config"] = _without_defaults(out["method_config"], default)
    return out


def _without_defaults(values: dict[str, Any], default: Any) -> dict[str, Any]:
    reference = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}
    out = {}
    for key, value in values.items():
        if key in reference and _plain(value) == _plain(reference[key]):
            continue
        if isinstance(value, dict) and dataclasses.is_dataclass(reference.get(key)):
            value = _without_defaults(value, reference[key])
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    """JSON's view of a value: tuples and lists alike, dataclasses as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=list))


def _read(path: str | Path) -> tuple[str, dict]:
    """(text, parsed TOML) of a spec file; every failure is a SpecError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"benchmark spec {path} does not exist") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder; give a spec file, e.g. benchmarks/smoke.toml") from None
    except UnicodeDecodeError as err:
        raise SpecError(
            f"{path}:1: not UTF-8 text ({err.reason} at byte {err.start}); a spec is TOML"
        ) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column \d+\)", str(err))
        line = m.group(1) if m else "1"
        message = re.sub(r" ?\(at line.*\)", "", str(err))
        raise SpecError(f"{path}:{line}: {message}") from None


def _data(c: _Ctx, raw: dict) -> dict[str, Any]:
    """The [data] table, checked, with its defaults filled in."""
    data = _table(c, raw, "data", DATA_KEYS)
    types = {"val_size": ("int", 0), "shots": ("int", 1), "split_seed": ("int", 0), "surrogate": ("str",)}
    _check_types(c, data, ("data",), {**types, "surrogate_dir": ("str",), "surrogate_size": ("int", 1)})
    return {
        "val_size": data.get("val_size", 5000),
        "shots": data.get("shots", 5),
        "split_seed": data.get("split_seed", 0),
        **{k: data[k] for k in ("surrogate", "surrogate_dir", "surrogate_size") if k in data},
    }


def load_spec(path: str | Path) -> Spec:
    """Parse and check a spec; every job of the grid, references first within each replicate."""
    text, raw = _read(path)
    c = _Ctx(str(path), text)
    for key in raw:
        if key not in TOP_KEYS:
            raise c.fail(f"unknown key {key!r}; valid keys: {', '.join(TOP_KEYS)}", (), key)
    strings = ("name", "data_dir", "dataset", "model", "recipe")
    _check_types(c, raw, (), {**dict.fromkeys(strings, ("str",)), "references": ("bool",)})
    _check_types(c, raw, (), {"features_per_class": ("int", 1)})
    dataset = _dataset(c, raw)
    info = INFO[dataset]
    model, width = _model(c, raw)
    train_base = _train(c, raw)
    data = _data(c, raw)
    eval_cfg = c.config(EvalConfig(), _table(c, raw, "eval"), ("eval",))
    audit_cfg = c.config(AuditConfig(), _table(c, raw, "audit", AUDIT_KEYS), ("audit",))
    audit = {k: getattr(audit_cfg, k) for k in AUDIT_KEYS}
    train_seeds, unlearn_seeds, eval_seed = _seeds(c, raw.get("seeds", [0]))
    _check_types(c, raw, (), {"replicates": ("int", 1)})
    replicates = raw.get("replicates", len(train_seeds))
    forget_sets = _forget_sets(c, raw.get("forget", [0]), info.num_classes, replicates)
    if eval_seed is not None:
        eval_cfg = dataclasses.replace(eval_cfg, seed=eval_seed)
    entries = _method_entries(c, raw.get("methods"))
    labels = [e["label"] for e in entries]
    refs = list(REFERENCES) if raw.get("references", True) else []
    default_feats = [n for n in ("original", "retrained", "spotter") if n in refs + labels]
    features = raw.get("features", default_feats)
    per_class = raw.get("features_per_class", 200)
    unknown = [f for f in features if f not in refs + labels] if isinstance(features, list) else [features]
    if unknown:
        raise c.fail(
            f"features: {unknown[0]!r} is not a row label; valid: {', '.join(refs + labels)}", (), "features"
        )
    context = {
        "dataset": dataset,
        "data": data,
        "model": {"name": model, "width": width},
        "eval": asdict(eval_cfg),
        "audit": audit,
    }
    name = raw.get("name", Path(path).stem)
    seeds = list(zip(train_seeds, unlearn_seeds, strict=True))
    jobs = _jobs(c, name, context, train_base, forget_sets, seeds, refs, entries, features, per_class)
    return Spec(name, str(path), text, jobs, raw.get("data_dir"))


def _model(c: _Ctx, raw: dict) -> tuple[str, int]:
    model = raw.get("model", "resnet18")
    try:
        check_model_name(model)
    except ValueError as err:
        raise c.fail(str(err), (), "model") from None
    width = raw.get("width", default_width(model))
    if not isinstance(width, int) or width < 1:
        raise c.fail(f"width: expected a positive integer, got {width!r}", (), "width")
    return model, width


def _train(c: _Ctx, raw: dict) -> TrainConfig:
    """The recipe (fast or paper) with the [train] overrides."""
    recipe = raw.get("recipe", "fast")
    if recipe not in RECIPES:
        raise c.fail(f"unknown recipe {recipe!r}; valid choices: {', '.join(RECIPES)}", (), "recipe")
    base = TrainConfig.paper() if recipe == "paper" else TrainConfig()
    return c.config(base, _table(c, raw, "train"), ("train",))


def _jobs(
    c: _Ctx,
    name: str,
    base: dict[str, Any],
    train_base: TrainConfig,
    forget_sets: list[tuple[tuple[int, ...], int]],
    seed_pairs: list[tuple[int, int]],
    refs: list[str],
    entries: list[dict[str, Any]],
    features: list[str],
    per_class: int,
) -> list[dict[str, Any]]:
    """Every (forget set, replicate, row) job; a job's id hashes its whole config, in a fixed key order."""
    jobs = []
    for forget, count in forget_sets:
        if count > len(seed_pairs):
            raise c.fail(
                f"forget {list(forget)}: {count} replicates but {len(seed_pairs)} seeds", (), "forget"
            )
        for rep, (t_seed, u_seed) in enumerate(seed_pairs[:count]):
            context = {
                "dataset": base["dataset"],
                "data": {**base["data"], "forget": list(forget)},
                "model": base["model"],
                "train": asdict(dataclasses.replace(train_base, seed=t_seed)),
                "eval": base["eval"],
                "audit": base["audit"],
            }
            rows = [{"label": r, "method": r, "kind": "reference"} for r in refs]
            for e in entries:
                cfg = e["cfg"]
                cfg = methods.with_seed(cfg, u_seed)
                rows.append(
                    {
                        "label": e["label"], "method": e["method"], "kind": "unlearn", "preset": e["preset"],
                        "protocol": e["protocol"], "method_config": asdict(cfg), "unlearn_seed": u_seed,
                    }
                )  # fmt: skip
            for order, r in enumerate(rows):
                r["features"] = per_class if r["label"] in features else 0
                config = {**context, **r}
                meta = {"spec": name, "replicate": rep, "order": order}
                jobs.append({"id": job_id(config), "config": config, "meta": meta})
    return jobs
