"""Old import path, kept for outside code: `rope_viz.features` is `rope_viz.measure.features` (the same module object)."""
import sys

from rope_viz.measure import features as _module

sys.modules[__name__] = _module
