"""Old import path, kept for outside code: `rope_viz.sweep` is `rope_viz.measure.sweep` (the same module object)."""
import sys

from rope_viz.measure import sweep as _module

sys.modules[__name__] = _module
