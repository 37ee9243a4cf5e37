"""The public API and the registry of measures are the single sources the README is checked against."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import spotter
from spotter.functional.measures import MEASURES, direction
from spotter.report.markdown import DEFAULT_COLUMNS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_every_public_name_resolves() -> None:
    for name in spotter.__all__:
        assert getattr(spotter, name) is not None, name


def test_readme_example_imports_from_spotter_only() -> None:
    code = re.search(r"```python\n(.*?)```", _section("Python API"), re.S).group(1)
    imports = [line for line in code.splitlines() if re.match(r"\s*(from|import) ", line)]
    assert imports == ["import spotter"]
    used = set(re.findall(r"\bspotter\.(\w+)", code))
    assert used <= set(spotter.__all__), used - set(spotter.__all__)


def test_import_spotter_is_light() -> None:
    probe = "import sys, spotter; print(sorted(m for m in sys.modules if m.startswith(('spotter', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['spotter']"


def test_readme_measure_table_agrees_with_the_registry() -> None:
    table = _section("What the numbers mean")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    seen = set()
    for row in rows:
        first_cell = row.split(" | ")[0]
        for key, arrow in re.findall(r"`(\w+)`\s*([↑↓]?)", first_cell):
            assert key in MEASURES, f"README lists {key!r}, which the registry does not know"
            assert arrow == MEASURES[key].arrow, (
                f"{key}: README says {arrow!r}, registry {MEASURES[key].arrow!r}"
            )
            seen.add(key)
    shown = {k for k in DEFAULT_COLUMNS if k in MEASURES and k != "pra_alpha"}
    assert shown <= seen, f"the demo table prints {sorted(shown - seen)}, which the README does not explain"


def test_directions_come_from_the_registry() -> None:
    assert direction("pra_forget_acc") == -1 and direction("test_retain_acc") == 1
    assert direction("mia_efficacy") == 0 and direction("not_a_measure") == 0
    assert MEASURES["ou_pgd"].fmt(0.012345) == "0.0123" and MEASURES["pra_alpha"].fmt(None) == "-"


def test_default_install_holds_every_library_the_commands_use():
    """`pip install spotter-unlearning` must run every command completely: the audit's membership
    inference and probe (scikit-learn), every plot (matplotlib) and image folders (Pillow)."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert {"torch", "numpy", "safetensors", "tqdm", "scikit-learn", "matplotlib", "pillow"} <= core
    extras = project["optional-dependencies"]
    assert all(not extras[name] for name in ("audit", "plots", "images"))  # aliases kept for old commands
