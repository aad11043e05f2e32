"""napari integration of dinomed-napari (readers, writer, sample data, dock widgets).

Only this sub-package imports napari / Qt / magicgui; every computation is a call into the core.
The triton guard (:mod:`.compat`) runs in ``dinomed-napari view`` and before the first extraction,
not on import: importing this package changes nothing else.
"""
