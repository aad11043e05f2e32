"""Qt-free policy of the interactive tools (what the napari widgets decide, usable by the CLI and bench).

- :mod:`.scribbles`: class names and colours, the "is this ready to train / is this absurd" check.
- :mod:`.scribble_index`: the scribbled voxels, updated from each stroke's voxels (no rescan per stroke).
- :mod:`.jobs`: batch size for interactive extraction, debounce delays, retrain-or-predict decision.
- :mod:`.display`: modality detection, the network window and the display contrast it implies.
- :mod:`.weights`: which weights to offer by default (what is on this machine).
"""
