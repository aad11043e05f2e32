"""The BLAS / OpenMP thread pools of numpy, scipy and scikit-learn, limited around solves.

Small solves (a scribble classifier's fit, the walk's per-slice model) run far faster on one thread
here: on a 2-core CPU after torch's forward passes, a logistic regression on 1141 x 384 features took
0.56 s with the default pools and 0.04 s with one (the same 52 iterations). One kept
:class:`threadpoolctl.ThreadpoolController` makes a limit cost 0.02 ms, where ``threadpool_limits``
finds the libraries again each time (2.8 ms: the walk limits once per part and slice).
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def controller() -> Any:
    """The process's threadpoolctl controller, made on first use once scikit-learn is imported (which
    loads scipy's BLAS and scikit-learn's OpenMP, so the controller knows every pool the solves use)."""
    import sklearn.linear_model  # noqa: F401  (loads the libraries the controller must see)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def limited(threads: int = 1) -> Any:
    """Context manager: the BLAS / OpenMP pools at most ``threads`` threads inside it."""
    return controller().limit(limits=max(1, int(threads)))
