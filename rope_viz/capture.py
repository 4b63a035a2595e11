"""Old import path, kept for outside code: `rope_viz.capture` is `rope_viz.measure.capture` (the same module object)."""
import sys

from rope_viz.measure import capture as _module

sys.modules[__name__] = _module
