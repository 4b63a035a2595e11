"""Models: the registry (bundled, hub and local), hub specs, checkpoints, APE resampling, preprocessing.

`from rope_viz import models` is the public face: the registry's names are re-exported here.
"""
from rope_viz.models.registry import *  # noqa: F401,F403  (the registry's __all__)
from rope_viz.models.registry import ASSETS_DIR, BUNDLED_DIR, bundled_dir  # noqa: F401
