"""Headless bench (``dinomed-napari bench``): cases with masks scored by the core's own functions.

``cases`` (inputs), ``protocols`` (few-click, isolation, probe, baseline), ``grid`` (settings and the
models x resolutions grid), ``runner`` (in-process / dask), ``outputs``, ``plots``, ``report``, ``run``
(:func:`dinomed_napari.bench.run.run_bench`). See docs/bench.md.
"""
