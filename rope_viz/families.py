"""Old import path, kept for outside code: `rope_viz.families` is `rope_viz.adapters` (the same module object)."""
import sys

from rope_viz import adapters as _module

sys.modules[__name__] = _module
