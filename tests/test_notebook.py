"""The notebook tour (notebooks/tour.ipynb) runs top to bottom on the real data, in a real Jupyter kernel, on a tiny
budget; it is committed without outputs, so that it reviews as code."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

nbformat = pytest.importorskip("nbformat", reason="the notebook extra: pip install -e '.[notebook]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra: pip install -e '.[notebook]'")

TOUR = ROOT / "notebooks" / "tour.ipynb"


def test_the_tour_is_committed_without_outputs():
    notebook = nbformat.read(TOUR, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def without_this_environment(path: str) -> str:
    """PATH without the folder of this interpreter's programs (a virtual environment's bin/): as a user has it who
    runs ``.venv/bin/jupyter lab`` without activating the environment."""
    here = Path(sys.executable).parent
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and Path(p).resolve() != here.resolve())


@pytest.mark.slow
def test_the_tour_runs_top_to_bottom_on_real_data(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from tensorboard import manager

    monkeypatch.setenv("LENET_TOUR_QUICK", "1")
    monkeypatch.setenv("LENET_TOUR_DIR", str(tmp_path))
    # The kernel runs this interpreter (the environment's python), but its programs are not on PATH: %tensorboard must
    # still find the environment's own tensorboard.
    monkeypatch.setenv("PATH", without_this_environment(os.environ.get("PATH", "")))
    notebook = nbformat.read(TOUR, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(ROOT / "notebooks")}})
    try:
        client.execute()  # a cell that raises fails here, naming the cell
    finally:
        for server in manager.get_all():  # the %tensorboard cell's server outlives the kernel: stop it
            if Path(server.logdir) == tmp_path:
                os.kill(server.pid, signal.SIGTERM)

    # it trained in the kernel's own process through src.train: each run's record is in its folder
    for run in ("sigmoid", "sweep/sigmoid", "sweep/relu"):
        summary = json.loads((tmp_path / run / "metrics.json").read_text())
        assert summary["status"] == "completed" and summary["epochs"] == 2, run
        assert len(json.loads((tmp_path / run / "history.json").read_text())) == 2
        assert list((tmp_path / run).glob("events.out.tfevents.*")), run
    outputs = {i: cell.outputs for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    sources = {i: notebook.cells[i].source for i in outputs}

    def cell(text: str) -> list:
        return next(outputs[i] for i, source in sources.items() if text in source)

    def pictures(cell_outputs: list) -> int:
        return sum("image/png" in out.get("data", {}) for out in cell_outputs)

    assert pictures(cell("learning_curves(history)")) == 1
    assert pictures(cell("filter_grid(conv.weight, name)")) == 2  # conv1 and conv2
    assert pictures(cell("feature_maps_figure(")) == 2  # a pullover and a coat
    assert pictures(cell('for activation in ["sigmoid", "relu"]')) == 1
    printed = "".join(out.get("text", "") for out in cell('for activation in ["sigmoid", "relu"]'))
    assert "sigmoid: test accuracy" in printed and "relu: test accuracy" in printed
    board = "".join(str(out.get("data", {})) for out in cell("%tensorboard"))
    assert "iframe" in board or "localhost" in board, board[:500]
