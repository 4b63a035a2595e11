"""Old import path, kept for outside code: `rope_viz.data` is `rope_viz.scenes.data` (the same module object)."""
import sys

from rope_viz.scenes import data as _module

sys.modules[__name__] = _module
