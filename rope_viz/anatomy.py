"""Short import path: `rope_viz.anatomy` is `rope_viz.measure.anatomy` (the same module object)."""
import sys

from rope_viz.measure import anatomy as _module

sys.modules[__name__] = _module
