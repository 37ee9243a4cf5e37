"""Re-record committed rows' code digests under today's digest definition (a one-off migration).

    python benchmarks/restamp_digests.py benchmarks/results/*/results.jsonl

When the definition of a row's `code` digests changes (2026-12-04: folder digests became import
closures, spotter/bench/provenance.py), a committed row's recorded digests no longer compare with
today's even where the code did not change. For every row this checks out the commit it records
(`git`), recomputes the digests with that commit's own provenance code, and only where they equal
the recorded ones (the row was computed by exactly that commit's code) writes the digests of the
same commit's files under today's definition. Other rows are left as they are (stale or unverified).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from spotter.bench.provenance import code_digests

REPO = Path(__file__).resolve().parent.parent


def old_digests(tree: Path, kind: str, method: str) -> dict[str, str] | None:
    code = (
        "import json, sys; from spotter.bench.provenance import code_digests; "
        f"print(json.dumps(code_digests({kind!r}, {method!r})))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, env={"PYTHONPATH": str(tree)}
    )
    return json.loads(run.stdout) if run.returncode == 0 else None


def main(paths: list[str]) -> None:
    trees: dict[str, Path | None] = {}
    scratch = Path(tempfile.mkdtemp(prefix="restamp-"))
    for path in paths:
        lines = Path(path).read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        changed = 0
        for row in rows:
            commit, recorded = row.get("git"), row.get("code")
            if not isinstance(recorded, dict) or not commit or commit == "unknown":
                continue
            if commit not in trees:
                tree = scratch / commit
                ok = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit],
                                    capture_output=True).returncode == 0  # fmt: skip
                trees[commit] = tree if ok else None
            tree = trees[commit]
            kind, method = row.get("kind", "method"), row.get("method", "")
            if tree is None or old_digests(tree, kind, method) != recorded:
                continue
            row["code"] = code_digests(kind, method, tree / "spotter")
            changed += 1
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{path}: {changed} of {len(rows)} rows re-recorded")
    for tree in trees.values():
        if tree is not None:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True
            )


if __name__ == "__main__":
    main(sys.argv[1:])
