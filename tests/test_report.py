"""`spotter report`: tables, plots and the HTML page rendered from the rows (and features) alone."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from _bench_fixtures import Run

from spotter import cli
from spotter.report.plots import PLOTS
from spotter.report.tables import Setting, latex_table, markdown_table, summary_lines

torch.set_num_threads(1)

CHROMIUM = Path("/usr/bin/chromium")
SLUG = "synthetic_tiny16_forget0"


@pytest.fixture(scope="module")
def rendered(smoke: Run, tmp_path_factory) -> Path:
    """The session's smoke run copied (results.jsonl + features/ only) to a fresh folder and rendered
    there; nothing of the original run folder (nor the model cache) is needed: both are moved out of
    reach while the report renders, and back afterwards (test_bench.py reads them too)."""
    fresh = tmp_path_factory.mktemp("copy") / "run"
    fresh.mkdir()
    shutil.copy(smoke.results, fresh / "results.jsonl")
    shutil.copytree(smoke.out / "features", fresh / "features")
    away = tmp_path_factory.mktemp("away")
    moved = [(path, away / path.name) for path in (smoke.out, smoke.cache)]
    for path, elsewhere in moved:
        path.rename(elsewhere)
    try:
        assert cli.main(["report", str(fresh)]) == 0
    finally:
        for path, elsewhere in moved:
            elsewhere.rename(path)
    return fresh / "report"


def test_every_table_and_plot_is_rendered(rendered: Path) -> None:
    for ext in ("md", "csv", "tex"):
        assert (rendered / f"{SLUG}.{ext}").stat().st_size > 0
    for name, _ in PLOTS:
        png = rendered / f"{SLUG}-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (rendered / "report.md").read_text()
    assert all(f"({SLUG}-{name}.png)" in md for name, _ in PLOTS)
    html = (rendered / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(PLOTS)
    assert "<img" in html and 'src="http' not in html and "<link" not in html  # self-contained


def test_tables_have_methods_as_rows_and_mean_std_cells(rendered: Path) -> None:
    table = (rendered / f"{SLUG}.md").read_text().splitlines()
    assert table[0].startswith("| method | n | forget | retain | test forget | test retain | OU@ε")
    assert [line.split(" | ")[0].strip("| ") for line in table[2:]] == [
        "original",
        "retrained",
        "finetune",
        "spotter",
    ]
    assert all(re.search(r"\d+\.\d+ ± \d+\.\d+", line) for line in table[2:])
    assert "**" in "\n".join(table)  # the best value per column is marked
    rows = list(csv.DictReader((rendered / f"{SLUG}.csv").open()))
    assert [r["method"] for r in rows] == ["original", "retrained", "finetune", "spotter"]
    assert {"ou_pgd_mean", "ou_pgd_std", "pra_forget_acc_mean", "mia_efficacy_mean", "time_s_mean"} <= set(
        rows[0]
    )
    tex = (rendered / f"{SLUG}.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\pm" in tex and r"\mathbf{" in tex


def _row(label: str, rep: int, **values: float) -> dict:
    base = {"dataset": "d", "model": {"name": "m", "width": 1}, "forget_classes": [0], "order": 0}
    return {**base, "label": label, "replicate": rep, **values}


def test_best_marks_follow_each_metric_direction() -> None:
    rows = [
        _row("original", 0, test_forget_acc=90.0, test_retain_acc=95.0, mia_efficacy=1.0),
        _row("retrained", 0, test_forget_acc=0.0, test_retain_acc=94.0, mia_efficacy=30.0),
        _row("a", 0, test_forget_acc=5.0, test_retain_acc=93.0, mia_efficacy=90.0),
        _row("b", 0, test_forget_acc=1.0, test_retain_acc=90.0, mia_efficacy=35.0),
    ]
    st = Setting(rows)
    assert st.best("test_forget_acc", 2) == {"b"}  # lower is better; references never marked
    assert st.best("test_retain_acc", 2) == {"a"}  # higher is better
    assert st.best("mia_efficacy", 2) == {"b"}  # no direction: closest to the retrained model
    assert "**1.00 ± 0.00**" in markdown_table(st) and r"\mathbf{1.00 \pm 0.00}" in latex_table(st)


def test_summary_line_is_quotable() -> None:
    rows = []
    for rep, (retain, ou) in enumerate([(92.0, 0.004), (91.6, 0.006)]):
        rows += [
            _row("original", rep, test_forget_acc=90.0, test_retain_acc=92.2, ou_pgd=0.5, pra_forget_acc=99.0, time_s=60.0),
            _row("retrained", rep, test_forget_acc=0.0, test_retain_acc=93.0, ou_pgd=0.02, pra_forget_acc=50.0, time_s=50.0),
            _row("spotter", rep, test_forget_acc=0.0, test_retain_acc=retain, ou_pgd=ou, pra_forget_acc=0.6 * rep, time_s=3.0),
        ]  # fmt: skip
    line = summary_lines(Setting(rows))[-1]
    assert line.startswith(
        "spotter: forget 0.0 ± 0.0, retain −0.4 ± 0.3 (vs original), OU@ε 0.0050 ± 0.0014 (0.25× retrained), PRA 0.3 ± 0.4"
    )
    assert line.endswith("time 3.0 ± 0.0 s (n = 2 seeds)")


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path, capsys) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "spotter bench" in capsys.readouterr().err


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)
def test_html_page_opens_in_headless_chromium_with_every_image(rendered: Path, tmp_path) -> None:
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
        (rendered / "report.html").as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout
    assert f"all {len(PLOTS)} images decoded" in dom, dom[-500:]
    assert "<table>" in dom and "spotter: forget" in dom


def test_per_class_damage_pairs_each_row_with_the_original_of_its_seed() -> None:
    from spotter.report.plots import per_class_changes

    def row(label: str, seed: int, acc: list[float]) -> dict:
        return {
            **_row(label, seed, test_retain_acc=90.0),
            "seeds": {"train": seed},
            "per_class_test_acc": acc,
        }

    rows = [
        row("original", 0, [90.0, 80.0, 70.0]),
        row("original", 1, [92.0, 82.0, 60.0]),
        row("a", 0, [0.0, 70.0, 70.0]),  # seed 0: class 1 lost 10
        row("a", 1, [0.0, 82.0, 50.0]),  # seed 1: class 2 lost 10 (against its own original, not seed 0's)
    ]
    names, table = per_class_changes(Setting(rows))
    assert names == ["a"]
    assert table.tolist() == [[-91.0, -5.0, -5.0]]


def test_a_replicate_is_its_seeds_not_its_index_in_a_spec() -> None:
    """A spec restricted to seed 2 (to finish one context of a grid) numbers it replicate 0: its rows
    must count beside seed 0's, not replace them; a rerun of the same seeds still replaces."""

    def row(label: str, seed: int, retain: float, rep: int = 0) -> dict:
        unlearn = None if label == "original" else seed
        return {
            **_row(label, rep, test_retain_acc=retain, test_forget_acc=0.0),
            "seeds": {"train": seed, "unlearn": unlearn},
        }

    rows = [
        row("original", 0, 94.0), row("original", 2, 92.0),
        row("a", 0, 93.0), row("a", 2, 90.0),  # both replicate 0 in their specs
        row("b", 0, 80.0), row("b", 0, 93.5),  # one seed twice: the later row wins
    ]  # fmt: skip
    st = Setting(rows)
    assert [r["test_retain_acc"] for r in st.of("a")] == [93.0, 90.0]
    assert st.stat("a", "test_retain_acc").n == 2 and st.stat("b", "test_retain_acc").n == 1
    lines = {line.split(":")[0]: line for line in summary_lines(st)}
    assert "retain −1.5 ± 0.7 (vs original)" in lines["a"]  # each against the original of its own seed
    assert "retain −0.5 ± 0.0" in lines["b"]


def test_stale_rows_are_left_out_and_counted_unless_asked_for(smoke: Run, tmp_path) -> None:
    """A row computed by code that has changed since would be averaged with fresh ones: the report
    leaves it out (and says so), renders it on request, and refuses a folder of stale rows only."""
    import json

    from spotter.report.render import render

    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(smoke.results, folder / "results.jsonl")
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    old = {r["job"] for r in rows if r["label"] == "finetune"}
    assert old

    def stale(row: dict) -> str | None:
        return "method code changed" if row["job"] in old else None

    result = render(folder, stale=stale)
    table = (folder / "report" / f"{SLUG}.md").read_text()
    assert "| finetune |" not in table and "| spotter |" in table
    assert result["stale"] == len(old) and "finetune" in result["note"]
    assert result["note"] in (folder / "report" / "report.md").read_text()
    assert "stale row" in (folder / "report" / "report.html").read_text()
    render(folder, stale=stale, include_stale=True)
    assert "| finetune |" in (folder / "report" / f"{SLUG}.md").read_text()
    with pytest.raises(ValueError, match="every row"):
        render(folder, stale=lambda row: "measure code changed")
    assert render(folder)["stale"] == 0  # without a check every row counts


def test_labels_of_points_on_one_spot_are_placed_apart() -> None:
    from spotter.report.plots import place_labels, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot([0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], "o")
    offsets = place_labels(
        ax, [(0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (1.0, 0.0)], ["a", "spotter-fm", "spotter_auto", "x"]
    )
    assert offsets[0] == offsets[1]  # far apart: both take the first choice
    assert len(set(offsets[1:])) == 3  # the three on one spot get three different places
    plt.close(fig)


def test_a_figure_whose_data_is_gone_is_not_left_behind(smoke: Run, tmp_path) -> None:
    """A fresh clone has the rows but not the feature dumps (never committed): rendering there must
    give the report a clone would give, not keep an earlier render's feature figure on disk."""
    from spotter.report.render import render

    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(smoke.results, folder / "results.jsonl")
    shutil.copytree(smoke.out / "features", folder / "features")
    render(folder)
    figure = folder / "report" / f"{SLUG}-features.png"
    assert figure.exists()
    shutil.rmtree(folder / "features")
    render(folder)
    assert not figure.exists()
    assert f"{SLUG}-features.png" not in (folder / "report" / "report.md").read_text()
    assert (folder / "report" / f"{SLUG}-per_class.png").exists()  # the rest is still drawn


def test_the_report_says_what_each_context_cost(rendered: Path) -> None:
    """Per training seed: its rows and the minutes they recorded (a context's cost to reproduce)."""
    import json

    rows = [json.loads(line) for line in (rendered.parent / "results.jsonl").read_text().splitlines()]
    md = (rendered / "report.md").read_text()
    assert "Wall time per context" in md
    for seed in {r["seeds"]["train"] for r in rows}:
        mine = [r for r in rows if r["seeds"]["train"] == seed and not r.get("diverged")]
        wall = sum(r["wall_s"] for r in mine) / 60
        assert re.search(rf"^\| {seed} \| {len(mine)} \| {wall:.0f} \|", md, re.M), md
