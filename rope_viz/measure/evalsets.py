"""Eval sets for sweeps: held-out scenes (zoom or canvas) or an ImageFolder directory, at any resolution.

Resize policy: scenes are rendered natively at each resolution (zoom or canvas mode); image
folders are resized on the short side to R (bicubic, antialiased) and centre cropped to R x R
(crop ratio 1.0, the paper's evaluation policy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from timm.data import ImageNetInfo

from rope_viz import models
from rope_viz.errors import RopeVizError
from rope_viz.measure.distributed import SINGLE, Shard
from rope_viz.scenes import data

RESIZE_POLICY = {
    "scenes": "rendered natively at each resolution (no resampling)",
    "folder": "short side resized to R (bicubic, antialiased), centre crop R x R (crop ratio 1.0)",
}


class SweepError(RopeVizError):
    """A sweep could not run; the message is one sentence meant for the UI."""


@dataclass(frozen=True)
class EvalSet:
    """Where the images come from: bundled scenes or an ImageFolder directory."""

    kind: str  # "scenes" | "folder"
    mode: str = "zoom"  # scenes: "zoom" | "canvas"; folder: "folder"
    path: str = ""

    @property
    def label(self) -> str:
        return f"shapes:{self.mode}" if self.kind == "scenes" else self.path


def parse_dataset(dataset: str) -> EvalSet:
    """'shapes' | 'shapes:zoom' | 'shapes:canvas' | a folder path -> EvalSet."""
    if dataset in ("shapes", "shapes:zoom"):
        return EvalSet("scenes", "zoom")
    if dataset == "shapes:canvas":
        return EvalSet("scenes", "canvas")
    if dataset.startswith("shapes:"):
        raise SweepError(f"Unknown scene mode in {dataset!r}; valid: shapes, shapes:zoom, shapes:canvas.")
    path = Path(dataset).expanduser()
    if not path.is_dir():
        raise SweepError(f"{dataset} is neither 'shapes', 'shapes:canvas' nor an existing folder.")
    return EvalSet("folder", "folder", str(path.resolve()))


# ---------------------------------------------------------------- image folders

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def folder_class_index(spec: models.ModelSpec) -> dict[str, int]:
    """Folder names a model's classes may go by: its class names (also with '_' for ', ' and ' '),
    and for ImageNet-1k models the WordNet synsets (n01440764, ...) from timm's ImageNet info."""
    index = {}
    for i, name in enumerate(spec.class_names):
        for alias in (name, name.replace(", ", "_").replace(" ", "_"), name.lower()):
            index.setdefault(alias, i)
    if spec.num_classes == 1000:
        for i, synset in enumerate(ImageNetInfo().label_names()):
            index.setdefault(synset, i)
    return index


def folder_samples(path: str, spec: models.ModelSpec, limit: int | None = None) -> list[tuple[Path, int]]:
    """(image file, class index) for every image in class folders that match the model's classes.

    Raises SweepError for an empty folder or one whose class folders match none of the classes.
    """
    root = Path(path)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise SweepError(f"{root} has no class folders (expected ImageFolder layout: {root}/<class>/<image>).")
    index = folder_class_index(spec)
    matched = [(f, index[f.name]) for f in folders if f.name in index]
    if not matched:
        examples = ", ".join(f.name for f in folders[:3])
        raise SweepError(f"None of the {len(folders)} class folders in {root} (e.g. {examples}) "
                         f"matches a class of {spec.name}.")
    samples = [(file, label) for folder, label in matched
               for file in sorted(folder.iterdir()) if file.suffix.lower() in IMAGE_SUFFIXES]
    if not samples:
        raise SweepError(f"The class folders in {root} that match {spec.name} contain no images.")
    return samples[:limit] if limit else samples


def load_folder_batch(samples: list[tuple[Path, int]], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes: -> images (B, 3, R, R) uint8, labels (B,) int64, with the folder resize policy.

    One unreadable file stops the cell with a sentence naming it (skipping it would change n unseen).
    """
    images = []
    for path, _ in samples:
        try:
            image = data.load_image(path.read_bytes(), f"{path.parent.name}/{path.name}")
        except OSError as err:
            raise SweepError(f"{path} cannot be read ({type(err).__name__}); fix or remove it.") from err
        except data.ImageError as err:
            raise SweepError(f"{str(err)[:-1]} (in {path.parent.parent}); fix or remove it.") from err
        images.append((data.resize_center_crop(image, resolution) * 255).round().to(torch.uint8))
    return torch.stack(images), torch.tensor([label for _, label in samples], dtype=torch.int64)


def eval_images(evalset: EvalSet, spec: models.ModelSpec, resolution: int, limit: int, shard: Shard = SINGLE,
                labelled: bool = True):
    """The eval set at `resolution`, or this process's contiguous block of it when sharded. labelled=False: the
    images only matter (attention statistics), so a model of other classes (or none) may see the scenes.

    Shapes: -> images (N, 3, R, R) uint8, labels (N,) int64
    """
    if evalset.kind == "scenes":
        if labelled and spec.class_names != tuple(data.CLASS_NAMES):
            raise SweepError(f"{spec.name} was not trained on the scenes' classes; use an image folder.")
        seeds = range(data.EVAL_SEEDS.start, data.EVAL_SEEDS.start + min(limit, len(data.EVAL_SEEDS)))
        block = shard.take(seeds)
        return data.scene_tensors(block, resolution, evalset.mode) if len(block) else _no_images(resolution)
    block = shard.take(folder_samples(evalset.path, spec, limit))
    return load_folder_batch(block, resolution) if block else _no_images(resolution)


def _no_images(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty batch: a process whose block is empty (fewer images than processes) still joins the sum."""
    return torch.zeros(0, 3, resolution, resolution, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
