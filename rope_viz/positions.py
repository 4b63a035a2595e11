"""Old import path, kept for outside code: `rope_viz.positions` is `rope_viz.measure.positions` (the same module object)."""
import sys

from rope_viz.measure import positions as _module

sys.modules[__name__] = _module
