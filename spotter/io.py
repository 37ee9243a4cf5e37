"""Files and hashes: atomic writes, JSON, stable hashes, output checks, the git revision (a leaf).

Every file the library writes goes through `atomic_write` (temp file + rename), so a crash never
leaves half a checkpoint, row file or report behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("spotter")

_UMASK = os.umask(0o022)  # read the process umask (only os.umask returns it) and put it back
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp) on a temp file next to `path`, then rename it over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; give it the mode open() would
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (a crash never leaves half a report)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def git_revision() -> str:
    """The short commit of the checkout this package runs from ($SPOTTER_GIT_REVISION where the code
    runs from a copy without .git, e.g. a GPU machine), or "unknown"."""
    if os.environ.get("SPOTTER_GIT_REVISION"):
        return os.environ["SPOTTER_GIT_REVISION"]
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


def digest(obj: Any, length: int = 16, default: Callable[[Any], Any] = str) -> str:
    """A stable hash of a JSON-able object (keys sorted): cache keys, job ids, fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """A stable hash of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


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
    """`obj` as indented JSON at `path`, written atomically."""
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
