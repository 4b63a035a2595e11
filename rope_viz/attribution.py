"""Old import path, kept for outside code: `rope_viz.attribution` is `rope_viz.measure.attribution` (the same module object)."""
import sys

from rope_viz.measure import attribution as _module

sys.modules[__name__] = _module
