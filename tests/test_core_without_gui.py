"""The core and the headless CLI must work with napari, Qt and magicgui absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoGui(importlib.abc.MetaPathFinder):
        BLOCKED = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "superqt")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"GUI package {name} is blocked in this test")
            return None

    sys.meta_path.insert(0, _NoGui())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def test_every_core_module_imports_without_gui():
    result = _run(
        """
        import importlib, pkgutil
        import dinomed_napari
        bad = []
        n = 0
        for info in pkgutil.walk_packages(dinomed_napari.__path__, "dinomed_napari."):
            if info.name.startswith("dinomed_napari._napari") or info.name == "dinomed_napari.cli.view":
                continue
            importlib.import_module(info.name)
            n += 1
        print("imported", n)
        """
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 20  # io, models, features, analysis, bench, cli ...


def test_gui_blocker_is_effective():
    # Guards the test above: the blocker must really stop napari from importing.
    result = _run("import napari")
    assert result.returncode != 0
    assert "blocked in this test" in result.stderr


def test_headless_extract_runs_without_gui(tmp_path):
    result = _run(
        f"""
        import numpy as np
        from dinomed_napari.cli.main import main
        rng = np.random.default_rng(0)
        vol = rng.normal(size=(3, 40, 48)).astype("float32")
        np.save({str(tmp_path / "v.npy")!r}, vol)
        rc = main(["extract", {str(tmp_path / "v.npy")!r}, "--model", "S", "--weights", "random",
                   "--resolution", "32", "--cache-dir", {str(tmp_path / "cache")!r}])
        print("rc", rc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "rc 0" in result.stdout
    assert "random" in result.stdout
