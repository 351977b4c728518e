"""notebooks/explore_candidates.ipynb runs top to bottom (tiny size, synthetic images)."""
import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "explore_candidates.ipynb"


def test_explore_candidates_notebook_runs(image_folder, nb201_table_path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXNAS_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("JAXNAS_NOTEBOOK_DATA", str(image_folder))
    monkeypatch.setenv("JAXNAS_NOTEBOOK_TABLE", str(nb201_table_path))
    monkeypatch.setenv("JAXNAS_CACHE", str(tmp_path / "data-cache"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}},
                   ).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "naswot   Kendall tau vs NB201" in text and "supernet one-batch accuracy Kendall tau" in text
    assert "top 3 by NASWOT" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the scatter plots
