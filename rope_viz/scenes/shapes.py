"""Signed distance functions for the procedural scenes: pure numpy, any resolution.

A shape is a function of points (..., 2) in scene units returning the signed distance to its
edge (negative inside). Rendering turns distance into coverage with a one-pixel ramp, which is
what makes every scene anti-aliased and the same at any resolution.
"""
from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "star")


def polygon_vertices(kind: str, radius: float, rotation: float) -> np.ndarray:
    """Vertices (V, 2) of a polygonal shape around the origin; `radius` is its circumradius."""
    if kind == "square":
        angles = np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(angles), np.sin(angles)], -1) * radius
    elif kind == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(angles), np.sin(angles)], -1) * radius
    elif kind == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
        pts = np.stack([np.cos(angles), np.sin(angles)], -1) * radii[:, None]
    elif kind == "cross":
        a, b = radius * 0.75, radius * 0.27  # arm half-length and half-width: a plus sign
        pts = np.array([[b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b],
                        [-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b]])
    else:
        raise ValueError(f"Unknown polygon {kind!r}; valid: square, triangle, star, cross.")
    c, s = np.cos(rotation), np.sin(rotation)
    return pts @ np.array([[c, s], [-s, c]])


def sdf_polygon(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple polygon (winding-number sign). Shapes: (..., 2), (V, 2) -> (...)"""
    d = np.sum((points - vertices[0]) ** 2, axis=-1)
    inside = np.zeros(points.shape[:-1], dtype=bool)
    for i in range(len(vertices)):
        a, b = vertices[i], vertices[i - 1]
        edge = b - a
        w = points - a
        t = np.clip((w @ edge) / (edge @ edge), 0.0, 1.0)
        nearest = w - t[..., None] * edge
        d = np.minimum(d, np.sum(nearest ** 2, axis=-1))
        # Crossing test for the even-odd rule.
        c1 = points[..., 1] >= a[1]
        c2 = points[..., 1] < b[1]
        c3 = edge[0] * w[..., 1] > edge[1] * w[..., 0]
        flip = (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
        inside ^= flip
    return np.where(inside, -1.0, 1.0) * np.sqrt(d)


def sdf_shape(points: np.ndarray, kind: str, center, radius: float, rotation: float = 0.0) -> np.ndarray:
    """Signed distance to a filled shape of SHAPES at `center`. Shapes: (..., 2) -> (...)"""
    p = points - np.asarray(center, dtype=np.float64)
    if kind == "circle":
        return np.linalg.norm(p, axis=-1) - radius * 0.85  # a little smaller: equal visual weight
    return sdf_polygon(p, polygon_vertices(kind, radius, rotation))


def sdf_segment(points: np.ndarray, a, b) -> np.ndarray:
    """Unsigned distance to the segment a-b. Shapes: (..., 2) -> (...)"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    w, edge = points - a, b - a
    t = np.clip((w @ edge) / max(edge @ edge, 1e-12), 0.0, 1.0)
    return np.linalg.norm(w - t[..., None] * edge, axis=-1)


def coverage(distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from signed distance, with a ramp one output pixel wide."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)
