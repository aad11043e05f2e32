"""Work-arounds for crashes of the viewer process caused by other packages (no Qt needed here)."""

from __future__ import annotations

import os
import sys


def block_triton_after_gl() -> bool:
    """Keep ``triton`` from being imported into the viewer process; returns True if blocked.

    Why: timm imports torchvision, which imports ``torch._dynamo``, which imports ``triton`` if it is
    installed. ``libtriton.so`` bundles its own LLVM, and loading it after Mesa's OpenGL driver
    (llvmpipe under Xvfb / remote desktops, radeonsi ...) has loaded *its* LLVM segfaults in LLVM's
    static initialisers. napari creates the GL context before any plugin code runs, so the only safe
    order is "no triton at all". The plugin never uses ``torch.compile`` (triton's only user), and torch
    treats a missing triton as "not available". Set ``DINOMED_ALLOW_TRITON=1`` to opt out.
    """
    if "triton" in sys.modules or os.environ.get("DINOMED_ALLOW_TRITON") == "1":
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # makes `import triton` raise ImportError
    return True
