"""Long steps show a bar on a terminal and log a start and an end line otherwise."""

from __future__ import annotations

import logging

import pytest
import torch

from spotter import progress
from spotter.functional.perturb import neighbourhood


def test_task_logs_start_and_end_without_a_terminal(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="spotter"), progress.task("building things", 3) as t:
        t.update()  # a no-op here: no terminal, no bar
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "building things ..." and lines[-1].startswith("building things: done in ")


def test_task_shows_a_bar_on_a_terminal(monkeypatch, caplog) -> None:
    shown = []

    class FakeBar:
        def __init__(self, total: int, desc: str) -> None:
            self.n, self.closed = 0, False
            shown.append(self)

        def update(self, n: int = 1) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(progress, "bar", lambda total, desc: FakeBar(total, desc))
    with caplog.at_level(logging.INFO, logger="spotter"), progress.task("audit: pra", 4) as t:
        for _ in range(4):
            t.update()
    assert shown[0].n == 4 and shown[0].closed
    assert [r.getMessage() for r in caplog.records][-1].startswith("audit: pra: done in ")  # no start line


@pytest.mark.parametrize("kind", ["gaussian", "pgd"])
def test_the_neighbourhood_build_reports_its_progress(kind, caplog) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.randint(0, 255, (10, 1, 4, 4), dtype=torch.uint8), torch.randint(0, 3, (10,))
    with caplog.at_level(logging.INFO, logger="spotter"):
        neighbourhood(model, x, y, kind, 0, batch_size=4)
    assert any(
        r.getMessage().startswith(f"{kind} neighbourhood of 10 images: done in") for r in caplog.records
    )
