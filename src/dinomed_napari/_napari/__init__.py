"""napari integration of dinomed-napari (readers, writer, sample data, dock widgets).

Only this sub-package imports napari / Qt / magicgui; every computation is a call into the core.
"""

from .compat import block_triton_after_gl

block_triton_after_gl()
