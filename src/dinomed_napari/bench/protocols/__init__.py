"""Bench protocols: each calls the same core functions as the napari widgets and returns result rows."""
