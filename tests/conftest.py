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

