"""Shared fixtures: real data paths (bundled copies first, ../shared/data as fallback) and a temp cache."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Never touch the user's real feature cache from tests.
    monkeypatch.setenv("DINOMED_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The workplace's ../shared/data folder (tests that need files not bundled use this)."""
    if not SHARED.is_dir():
        pytest.fail(f"real data folder {SHARED} is missing")
    return SHARED



@pytest.fixture
def ctrl_c_at(monkeypatch):
    """``arm(n)``: the CLI progress bar sends the process a real SIGINT (the user's Ctrl-C) once ``n``
    slices are done; ``arm.disarm()`` restores the plain bar for the rerun."""
    import os
    import signal

    from dinomed_napari.features import progress

    real = progress.TqdmProgress.__call__

    def arm(at: int) -> None:
        def call(self, done, total):
            real(self, done, total)
            if done == at:
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(progress.TqdmProgress, "__call__", call)

    arm.disarm = lambda: monkeypatch.setattr(progress.TqdmProgress, "__call__", real)
    return arm
