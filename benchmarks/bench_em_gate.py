"""How often ``spatial="auto"`` follows simulated EM strokes in 3D rather than leaving them to the classifier.

Draws ``simulate_scribbles`` on the ISBI 2012 EM crop (k = 1, 2, 3, 5 annotated slices; seeds 0-4; 1, 2 or 3
strokes per class), random ViT-S at 512, and for each draw says whether the strokes are spread over the
plane, or their outlines are one structure to follow (``propagated``) or several objects (``classified``)::

    .venv/bin/python benchmarks/bench_em_gate.py [--max-parts N]

``--max-parts`` overrides ``annotated.MAX_PARTS`` (the most separate regions one structure's outline may
have) to compare settings. Numbers are in docs/analysis.md.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-parts", type=int, default=None)
    args = parser.parse_args(argv)

    import dinomed_napari.analysis.annotated as prop
    from dinomed_napari.analysis.segment import ScribbleSegmenter
    from dinomed_napari.bench.scribbles import simulate_scribbles
    from dinomed_napari.errors import Cancelled
    from dinomed_napari.features.extract import extract_features
    from dinomed_napari.io import load_volume
    from dinomed_napari.models import load_backbone
    from dinomed_napari.preprocess import Preprocess
    from dinomed_napari.samples import sample_path

    if args.max_parts is not None:
        prop.MAX_PARTS = args.max_parts
    vol = load_volume(sample_path("em"))
    cells = load_volume(sample_path("em_labels"), check=False).data == 255
    backbone = load_backbone("S", "random", device="cpu")
    fv = extract_features(vol, backbone=backbone, prep=Preprocess(resolution=512), cache_dir=False)
    seg = ScribbleSegmenter(intensity="filters")
    counts: dict[int, list[str]] = {}
    for per_class in (1, 2, 3):
        for k in (1, 2, 3, 5):
            for seed in range(5):
                scr = simulate_scribbles(cells.astype(np.uint8), n_slices=k, seed=seed,
                                         strokes_per_class=per_class).labels
                out = "spread"
                if prop.strokes_localized(scr):
                    seg.fit(fv, scr, image=vol.data, spacing=vol.spacing)
                    try:  # cancelled at the first walked slice: the outlines were accepted
                        res = seg.predict(cancel=lambda: True)
                        out = "classified" if res.propagation is None else "propagated"
                    except Cancelled:
                        out = "propagated"
                counts.setdefault(per_class, []).append(out)
    every = sum(counts.values(), [])
    for per_class, outs in [*counts.items(), ("all", every)]:
        tally = ", ".join(f"{o} {outs.count(o)}" for o in ("spread", "propagated", "classified"))
        print(f"strokes per class {per_class}: {tally} (of {len(outs)} draws; MAX_PARTS {prop.MAX_PARTS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
