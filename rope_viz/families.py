"""Old import path, kept for outside code: `rope_viz.families` is `rope_viz.adapters.families` (the same module object)."""
import sys

from rope_viz.adapters import families as _module

sys.modules[__name__] = _module
