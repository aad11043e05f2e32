"""The kept thread-pool controller: limits inside, restores after, found once."""

from __future__ import annotations

from threadpoolctl import threadpool_info

from dinomed_napari.blas import controller, limited


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_limited_sets_the_blas_pools_inside_and_restores_them_after():
    controller()  # loads scipy's BLAS too, so both are counted
    before = _blas_threads()
    assert before, "numpy's BLAS should be found"
    with limited(1):
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before
    with limited(0):  # never under one thread
        assert _blas_threads() == [1] * len(before)


def test_the_controller_is_made_once_and_knows_scipys_blas():
    first = controller()
    assert controller() is first
    # scikit-learn's import loaded scipy's BLAS (its own OpenBLAS build) before the controller was made.
    assert len([lib for lib in first.lib_controllers if lib.user_api == "blas"]) == len(_blas_threads())
