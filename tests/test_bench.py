"""`spotter bench`: the smoke spec end to end, resume, workers, spec errors with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _bench_fixtures import SMOKE, Run, bench, metrics

from spotter import cli
from spotter.bench.runner import assign, read_rows
from spotter.bench.spec import SpecError, job_id, load_spec

torch.set_num_threads(1)

BENCHMARKS = SMOKE.parent
KEYS = (
    "job", "spec", "label", "method", "kind", "replicate", "dataset", "forget_classes", "model", "seeds",
    "config", "git", "wall_s", "time_s", "forget_acc", "retain_acc", "test_forget_acc", "test_retain_acc",
    "ou_pgd", "ou_gaussian", "ou_sweep", "pra_forget_acc", "pra_curve", "pra_shots", "mia_efficacy",
    "dispersion", "history", "features", "statistics_forget_acc", "statistics_retain_acc",
)  # fmt: skip


@pytest.fixture(scope="module")
def run(smoke) -> Run:
    return smoke  # conftest.py: one smoke run per session, shared with test_report.py


def test_rows_and_keys(run: Run) -> None:
    rows = run.rows()
    assert len(rows) == 8  # (original, retrained, finetune, spotter) x 2 seeds
    assert sorted((r["label"], r["replicate"]) for r in rows) == sorted(
        (label, rep) for label in ("original", "retrained", "finetune", "spotter") for rep in (0, 1)
    )
    for r in rows:
        assert set(KEYS) <= set(r), set(KEYS) - set(r)
        assert r["job"] == job_id(r["config"])  # the id is the hash of the full config
        assert r["seeds"]["train"] == r["replicate"] and r["seeds"]["eval"] == 1234
        assert r["wall_s"] > 0 and r["git"]
        if r["label"] in ("original", "retrained", "spotter"):  # the report's feature projection
            assert (run.out / r["features"]["file"]).exists()
        if r["label"] == "spotter":
            assert r["seeds"]["unlearn"] == r["replicate"] and len(r["history"]) == 2
            assert r["config"]["method_config"]["lr"] == 0.01  # the spec's override
    assert len({r["job"] for r in rows}) == 8
    assert (run.out / "spec.toml").read_text() == SMOKE.read_text()


def test_unlearning_rows_carry_the_retraining_clock_of_their_own_run(run: Run) -> None:
    """The time bar compares an unlearning run with retraining timed beside it (the recipe's step
    and validation pass, extrapolated), not with a cached model's time from another run."""
    from spotter.training.fit import TrainConfig

    for r in run.rows():
        clock = r.get("retrain_clock")
        if r["label"] in ("original",):
            assert clock is None
            continue
        epochs = r["config"]["train"].get("epochs", TrainConfig().epochs)
        assert clock["step_s"] > 0 and clock["val_s"] > 0 and clock["steps"] % epochs == 0
        assert clock["seconds"] == pytest.approx(clock["steps"] * clock["step_s"] + epochs * clock["val_s"])
        if r["label"] == "retrained":  # trained in this very run: the clock reads its order of magnitude
            assert r["time_s"] / 3 < clock["seconds"] < r["time_s"] * 3


def test_rerun_skips_done_jobs_and_trains_nothing(run: Run, monkeypatch, capsys) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a finished job was run again")

    monkeypatch.setattr("spotter.bench.runner.run_jobs", refuse)
    monkeypatch.setattr("spotter.training.zoo.fit", refuse)
    before = run.results.read_bytes()
    assert bench(run.out, run.cache) == 0
    assert run.results.read_bytes() == before
    assert "8 already done, 0 run now" in capsys.readouterr().out


def test_resume_after_a_crash_finishes_only_the_missing_jobs(run: Run, tmp_path) -> None:
    lines = run.results.read_text().splitlines(keepends=True)
    out = tmp_path / "crashed"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(lines[:3]) + lines[3][:40])  # killed mid-line
    assert bench(out, run.cache) == 0
    rows = read_rows(out / "results.jsonl")
    assert len(rows) == 8 and len({r["job"] for r in rows}) == 8
    assert metrics(rows) == metrics(run.rows())  # same numbers whatever the order of the jobs


def test_stale_rows_are_named_kept_and_rerun_only_on_request(run: Run, tmp_path, monkeypatch, capsys) -> None:
    """A row records digests of the code that computed it: when that code changes the row is named
    as stale and kept; --rerun-stale reruns exactly those jobs and replaces their rows."""
    from spotter.bench.provenance import stale_reason

    rows = run.rows()
    assert all(stale_reason(r) is None for r in rows)  # just written by this code
    by_key = {(r["label"], r["replicate"]): i for i, r in enumerate(rows)}
    rows[by_key["spotter", 1]]["code"]["method"] = "0" * 16  # spotter.py changed since
    rows[by_key["original", 0]]["code"]["measure"] = "0" * 16  # an OU/PRA module changed since
    del rows[by_key["finetune", 0]]["code"]  # a row from before digests: unverified, left alone
    out = tmp_path / "stale"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a job ran without --rerun-stale")

    with monkeypatch.context() as m:
        m.setattr("spotter.bench.runner.run_jobs", refuse)
        assert bench(out, run.cache) == 0
    text = capsys.readouterr().out
    assert "2 stale row(s) kept" in text and "1 row(s) written before code digests" in text
    assert "stale: spotter (forget [0], seed 1): method code changed" in text
    assert "stale: original (forget [0], seed 0): measure code changed" in text

    assert bench(out, run.cache, "--rerun-stale") == 0
    assert "stale row" not in capsys.readouterr().out
    after = read_rows(out / "results.jsonl")
    assert len(after) == 8 and len({r["job"] for r in after}) == 8  # replaced, not appended
    before = {r["job"]: r for r in rows}
    rerun = {r["job"] for r in after if r != before[r["job"]]}  # the other rows are kept as they were
    assert rerun == {rows[by_key["spotter", 1]]["job"], rows[by_key["original", 0]]["job"]}
    assert metrics(after) == metrics(run.rows())  # the same code gives the same numbers


def test_a_part_of_the_spec_runs_alone_and_status_names_what_is_left(run: Run, tmp_path, capsys) -> None:
    """--methods/--forget/--seeds run a part of a grid (one session's share); --status runs nothing
    and lists per context the jobs with a fresh, stale or no row."""
    out = tmp_path / "part"
    assert bench(out, run.cache, "--methods", "original,finetune", "--seeds", "1") == 0
    rows = read_rows(out / "results.jsonl")
    assert sorted((r["label"], r["seeds"]["train"]) for r in rows) == [("finetune", 1), ("original", 1)]
    assert metrics(rows) == {k: v for k, v in metrics(run.rows()).items() if k in {r["job"] for r in rows}}
    capsys.readouterr()

    assert bench(out, run.cache, "--status") == 0
    text = capsys.readouterr().out
    assert "forget [0] seed 0: 4 missing" in text and "forget [0] seed 1: 2 fresh, 2 missing" in text
    assert (
        "missing: retrained, spotter" in text
        and "2 contexts: 2 fresh, 0 unverified, 0 stale, 6 missing" in text
    )
    assert len(read_rows(out / "results.jsonl")) == 2  # the status ran nothing

    rows = run.rows()
    rows[0]["code"]["measure"] = "0" * 16
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bench(stale, run.cache, "--status", "--forget", "0") == 0
    text = capsys.readouterr().out
    assert f"stale: {rows[0]['label']}: measure code changed" in text and "1 stale, 0 missing" in text


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--methods", "nope", "has no method label nope; it has: original, retrained, finetune, spotter"),
        ("--forget", "3", "has no forget set 3; it has: 0"),
        ("--seeds", "7", "has no training seed 7; it has: 0, 1"),
        ("--seeds", "one", "--seeds: expected comma-separated integers, got 'one'"),
    ],
)
def test_a_part_that_the_spec_does_not_have_is_named(
    flag: str, value: str, message: str, tmp_path, capsys
) -> None:
    assert bench(tmp_path / "out", tmp_path / "cache", flag, value) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_rows_record_the_code_the_run_imported_not_an_edit_made_during_it(
    monkeypatch, tmp_path, caplog
) -> None:
    """A long run keeps running the code it imported; a method file edited meanwhile must not be
    credited to the rows that old code computes (they must read as stale, with a warning)."""
    from spotter.bench import provenance, runner

    provenance.code_digests.cache_clear()
    versions = iter(f"{i:016d}" for i in range(1000))
    monkeypatch.setattr(provenance, "_digest", lambda files, root: next(versions))  # every read: a new edit
    cached_before_work = []

    def fake_context(*a, **k):  # noqa: ANN002, ANN003, ANN202
        cached_before_work.append(provenance.code_digests.cache_info().currsize)
        return object()

    monkeypatch.setattr(runner, "Context", fake_context)

    def fake_job(job, ctx, out):  # noqa: ANN001, ANN202
        c = job["config"]
        return {"job": job["id"], "label": c["label"], "kind": c["kind"], "method": c["method"], "wall_s": 0.0,
                "code": provenance.code_digests(c["kind"], c["method"])}  # fmt: skip

    monkeypatch.setattr(runner, "run_job", fake_job)
    monkeypatch.setattr(runner, "timed_against_retraining", lambda config: False)
    jobs = [j for j in load_spec(SMOKE).jobs if j["config"]["label"] in ("finetune", "spotter")]
    primed = {}
    real = provenance.code_digests

    with caplog.at_level("WARNING", logger="spotter"):
        runner.run_jobs(jobs, str(tmp_path), "cpu", None, None)
    for j in jobs:
        primed[j["config"]["method"]] = real(j["config"]["kind"], j["config"]["method"])  # the cached read
    rows = read_rows(tmp_path / "results.jsonl")
    assert len(rows) == len(jobs)
    assert cached_before_work[0] == 2  # both methods' digests read before any work began
    assert all(r["code"] == primed[r["method"]] for r in rows)
    assert "changed on disk during this run" in caplog.text
    provenance.code_digests.cache_clear()


def test_a_method_that_diverges_is_a_row_without_numbers_not_a_job_retried_forever(
    run: Run, tmp_path, capsys
) -> None:
    """A NaN loss at a method's settings is a result (the same seeds diverge again): the bench keeps
    it as a row naming the error, does not rerun it, and the report lists it outside its tables."""
    from spotter.bench.provenance import stale_reason
    from spotter.report.render import render

    spec = tmp_path / "diverging.toml"
    spec.write_text(SMOKE.read_text().replace("[methods.finetune]", "[methods.finetune]\nlr = 1e30", 1))
    out = tmp_path / "out"
    assert bench(out, run.cache, "--seeds", "0", spec=spec) == 0
    assert "diverged: finetune (forget [0], seed 0)" in capsys.readouterr().out
    rows = {r["label"]: r for r in read_rows(out / "results.jsonl")}
    assert set(rows) == {"original", "retrained", "finetune", "spotter"}
    assert "became" in rows["finetune"]["diverged"] and "test_forget_acc" not in rows["finetune"]
    assert stale_reason(rows["finetune"]) is None  # its code digests are recorded like any row's
    assert bench(out, run.cache, "--seeds", "0", "--status", spec=spec) == 0
    assert "diverged at their settings (a row without numbers): finetune" in capsys.readouterr().out
    assert bench(out, run.cache, "--seeds", "0", spec=spec) == 0
    assert "4 already done, 0 run now" in capsys.readouterr().out  # not retried
    result = render(out, stale=stale_reason)
    assert "finetune (forget [0], seed 0): " in result["note"] and "diverged" in result["note"]
    table = (out / "report" / "report.md").read_text().split("| method |", 1)[1]
    assert "| finetune |" not in table and "| spotter |" in table


def test_two_workers_give_the_numbers_of_one(run: Run, tmp_path) -> None:
    # a fresh cache: the two workers also train their own original/retrained models
    assert bench(tmp_path / "out", tmp_path / "cache", "--workers", "2") == 0
    rows = read_rows(tmp_path / "out" / "results.jsonl")
    assert metrics(rows) == metrics(run.rows())


def test_assign_keeps_contexts_together_and_splits_only_when_needed() -> None:
    jobs = load_spec(SMOKE).jobs
    plans = assign(jobs, 2)
    assert [len(p) for p in plans] == [4, 4]
    assert all(len({j["config"]["train"]["seed"] for j in p}) == 1 for p in plans)  # one seed each
    assert sorted(j["id"] for p in assign(jobs, 5) for j in p) == sorted(j["id"] for j in jobs)
    # a context begun in an earlier session goes first, even when it has fewer jobs left
    from spotter.bench.runner import context_key

    second = [j for j in jobs if j["config"]["train"]["seed"] == jobs[-1]["config"]["train"]["seed"]]
    shorter = [j for j in jobs if j not in second] + second[:2]
    (plan,) = assign(shorter, 1, {context_key(second[0]["config"])})
    assert [j["id"] for j in plan[:2]] == [j["id"] for j in second[:2]]
    (plan,) = assign(shorter, 1)
    assert plan[-1]["id"] == second[1]["id"]  # without it: the longest context first


BROKEN = {
    "syntax": ("seeds = ]\n", 7),
    "unknown method": ("[methods.nope]\nlr = 1.0\n", 7),
    "bad override": ('[methods.finetune]\nepochs = 1\nlr = "fast"\n', 9),
    "unknown override": ("[methods.finetune]\n\nwarp = 3\n", 9),
    "unknown key": ("colour = 'red'\n", 7),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_spec_errors_name_the_line(case: str, tmp_path, capsys) -> None:
    text, line = BROKEN[case]
    head = 'name = "broken"\ndataset = "synthetic"\nmodel = "tiny"\n# comment\nforget = [0]\n\n'
    spec = tmp_path / "spec.toml"
    spec.write_text(head + text + ("" if "methods" in text else "[methods.finetune]\n"))
    assert cli.main(["bench", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"spec.toml:{line}:" in err, err


def test_unknown_dataset_is_a_clear_error(tmp_path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('\ndataset = "no-such-set"\n[methods.finetune]\n')
    with pytest.raises(
        SpecError, match=r"s.toml:2: unknown dataset 'no-such-set'; valid choices: .*synthetic"
    ):
        load_spec(spec)


@pytest.mark.parametrize(
    "name", ["fashion_mnist", "fm_plus", "cifar10_resnet18", "cifar100_resnet18", "tinyimagenet_resnet18"]
)
def test_shipped_specs_parse(name: str) -> None:
    path = BENCHMARKS / f"{name}.toml"
    text = path.read_text()
    assert text.startswith("#") and "spotter bench" in text  # header: the command, runtime, numbers
    try:
        spec = load_spec(path)
    except SpecError as err:  # only until the image-folder dataset lands in spotter.data
        assert name.startswith("tinyimagenet") and "unknown dataset" in str(err), err
        return
    assert len({j["id"] for j in spec.jobs}) == len(spec.jobs) > 0
    assert {j["config"]["train"]["seed"] for j in spec.jobs} == {0, 1, 2}


# The smoke benchmark is bit-deterministic on a given CPU kernel set (one thread,
# tests/_bench_fixtures.py), so its main measures are pinned: a refactor that changes a number fails
# here. The tolerances are far above float reordering (~1e-7) and far below any change of maths.
# Tiny models trained a few epochs are chaotic, so the kernels torch dispatches to (AVX2 vs AVX512)
# move them beyond any useful tolerance: the pins are kept per CPU vendor and capability (the
# vendors' AVX512 machines differ too), each seen on a machine of this project's CI kind. Update the pins only with a change that is meant to move the
# numbers, and say so in its commit.
# (CPU vendor, capability) -> (label, replicate): (test_forget_acc, test_retain_acc, ou_pgd, pra_forget_acc, dispersion)
# Pinned on the stripe-texture synthetic set (spotter/data/loaders.py, 320 images a class). No AVX2
# entry: the AVX2 pins were taken on the earlier synthetic set and no AVX2 machine was at hand to
# measure the new one, so AVX2 machines skip this test until someone pins the numbers there.
# Note the smoke spec's method settings were sized for that earlier, smaller set: on this one
# finetune's single epoch keeps class 0 and spotter's 20 steps at lr 0.01 over-unlearn the retain set.
PINNED = {
    ("AuthenticAMD", "AVX512"): {  # AMD EPYC, 2026-11
        ("finetune", 0): (100.0, 100.0, 0.688029, 100.0, 0.988382),
        ("finetune", 1): (100.0, 100.0, 0.672719, 100.0, 0.979229),
        ("original", 0): (100.0, 100.0, 0.68342, 100.0, 0.985007),
        ("original", 1): (100.0, 100.0, 0.675066, 100.0, 0.977352),
        ("retrained", 0): (0.0, 100.0, 0.0896701, 0.0, 0.958489),
        ("retrained", 1): (0.0, 100.0, 0.0274808, 0.0, 0.991385),
        ("spotter", 0): (0.0, 40.0, 0.0194988, 0.0, 0.985807),
        ("spotter", 1): (0.0, 26.875, 0.0286884, 0.0, 0.996323),
    },
    ("GenuineIntel", "AVX512"): {  # Intel Xeon, 2026-12
        ("finetune", 0): (100.0, 100.0, 0.688012, 100.0, 0.988373),
        ("finetune", 1): (100.0, 100.0, 0.672654, 100.0, 0.979215),
        ("original", 0): (100.0, 100.0, 0.683479, 100.0, 0.985006),
        ("original", 1): (100.0, 100.0, 0.675361, 100.0, 0.977381),
        ("retrained", 0): (0.0, 100.0, 0.0905995, 0.0, 0.958558),
        ("retrained", 1): (0.0, 100.0, 0.0274986, 0.0, 0.991391),
        ("spotter", 0): (0.0, 40.0, 0.0205654, 0.0, 0.984866),
        ("spotter", 1): (0.0, 21.875, 0.0831539, 0.0, 0.991587),
    },
}


def cpu_kind() -> tuple[str, str]:
    """(vendor, kernel capability): AMD and Intel AVX512 machines round differently enough to move
    the over-unlearning smoke spotter by 5 points of retain accuracy."""
    vendor = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
                break
    return vendor, torch.backends.cpu.get_cpu_capability()


def test_smoke_numbers_are_pinned(run: Run) -> None:
    kind = cpu_kind()
    if kind not in PINNED:
        pytest.skip(f"no pinned smoke numbers for CPU {kind!r} (pinned: {list(PINNED)})")
    pinned = PINNED[kind]
    rows = {(r["label"], r["replicate"]): r for r in run.rows()}
    assert set(rows) == set(pinned)
    for key, (forget, retain, ou, pra, disp) in pinned.items():
        r = rows[key]
        assert r["test_forget_acc"] == pytest.approx(forget, abs=1e-4), key
        assert r["test_retain_acc"] == pytest.approx(retain, abs=1e-4), key
        assert r["pra_forget_acc"] == pytest.approx(pra, abs=1e-4), key
        assert r["ou_pgd"] == pytest.approx(ou, rel=1e-4, abs=1e-7), key
        assert r["dispersion"] == pytest.approx(disp, rel=1e-4), key


def test_job_ids_survive_a_new_config_field_and_follow_real_changes() -> None:
    """A row written before a field existed (its config lacks it) still matches its job when the new
    field's default keeps the old behaviour; a value that differs makes another job."""
    import copy

    job = next(j for j in load_spec(SMOKE).jobs if j["config"]["label"] == "spotter")
    older = copy.deepcopy(job["config"])
    del older["method_config"]["lambda3"]  # the simulated attack's weight, added after the first rows
    del older["train"]["amp"], older["eval"]["retain_limit"]
    assert job_id(older) == job["id"]
    changed = copy.deepcopy(job["config"])
    changed["method_config"]["lambda3"] = 0.5
    assert job_id(changed) != job["id"]
    changed = copy.deepcopy(job["config"])
    changed["train"]["epochs"] += 1
    assert job_id(changed) != job["id"]


def test_code_digests_follow_imports_not_folders(tmp_path) -> None:
    """A new module nobody imports leaves every digest alone; a change in a module one method
    imports makes that method's rows stale, not the others'."""
    import shutil

    from spotter.bench import provenance

    root = tmp_path / "spotter"
    shutil.copytree(provenance.ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = {
        m: provenance.code_digests("method", m, root) for m in ("spotter", "spotter_auto", "grad_ascent")
    }
    reference = provenance.code_digests("reference", "", root)
    (root / "functional" / "brand_new.py").write_text("X = 1\n")
    (root / "methods" / "brand_new_method.py").write_text("from spotter.functional import brand_new\n")
    provenance.code_digests.cache_clear()
    assert {m: provenance.code_digests("method", m, root) for m in before} == before
    assert provenance.code_digests("reference", "", root) == reference
    inversion = root / "functional" / "inversion.py"  # imported by spotter_auto only
    inversion.write_text(inversion.read_text() + "\n# changed\n")
    provenance.code_digests.cache_clear()
    after = {m: provenance.code_digests("method", m, root) for m in before}
    assert after["spotter_auto"]["method"] != before["spotter_auto"]["method"]
    assert after["spotter"] == before["spotter"] and after["grad_ascent"] == before["grad_ascent"]
    losses = root / "functional" / "losses.py"  # the evaluator's measures and Spotter both import it
    losses.write_text(losses.read_text() + "\n# changed\n")
    provenance.code_digests.cache_clear()
    changed = provenance.code_digests("method", "spotter", root)
    assert (
        changed["measure"] != before["spotter"]["measure"]
        and changed["method"] != before["spotter"]["method"]
    )
    assert provenance.code_digests("method", "grad_ascent", root)["method"] == before["grad_ascent"]["method"]
    provenance.code_digests.cache_clear()


def test_rows_name_the_trained_models_they_were_computed_on(run: Run) -> None:
    """A context's rows may come from sessions whose caches trained the references again; each row
    fingerprints the original and retrained weights it used, and the fingerprint sees one weight."""
    from spotter.bench.runner import weights_digest

    rows = run.rows()
    contexts: dict[tuple, set[str]] = {}
    for r in rows:
        assert set(r["model_digests"]) == {"original", "retrained"}
        key = (tuple(r["forget_classes"]), r["seeds"]["train"])
        contexts.setdefault(key, set()).add(json.dumps(r["model_digests"], sort_keys=True))
    assert all(len(d) == 1 for d in contexts.values())  # one context, one pair of models
    originals = {(k[1], json.loads(next(iter(d)))["original"]) for k, d in contexts.items()}
    assert len(originals) == len({k[1] for k in contexts})  # one original per training seed
    model = torch.nn.Linear(3, 2)
    before = weights_digest(model)
    assert weights_digest(model) == before
    with torch.no_grad():
        model.weight[0, 0] += 1e-6
    assert weights_digest(model) != before
