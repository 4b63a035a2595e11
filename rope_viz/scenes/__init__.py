"""Procedural scenes (the bundled models' data set) and image loading."""
