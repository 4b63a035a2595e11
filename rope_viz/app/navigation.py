"""The app's pages, one record each: app.py's navigation, Home's list of pages and the browser test's
page walk are all read from PAGES, so adding a page is one file in pages/ plus one record here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """One page: its file under pages/, the title and icon in the navigation, its URL path and one
    sentence for Home's list."""

    file: str
    title: str
    icon: str
    url_path: str
    summary: str


HOME = Page("pages/home.py", "Home", ":material/home:", "start",
            "what rope-viz shows, every model with its source, and the compute device.")
PAGES: tuple[Page, ...] = (
    Page("pages/lesson.py", "Lesson: RoPE in 2D", ":material/school:", "lesson",
         "new to RoPE? Five small interactive steps from one rotating feature pair to what the bundled models "
         "do beyond their training grid."),
    Page("pages/frequencies.py", "Frequencies", ":material/blur_on:", "frequencies",
         "the frequency vectors w_j of every head, the phase maps cos(w_j · p), the similarity kernel around a "
         "patch you pick (axial's cross-shaped artefact vs mixed's diagonal reach), their 2D spectra, how learned "
         "frequencies change across layers and heads, and where each position method moves them."),
    Page("pages/attention.py", "Attention", ":material/visibility:", "attention",
         "two models side by side on one image at any resolution; hover a patch to see its exact attention in "
         "one head, every head, the head mean, the CLS token's attention or the rollout, plus mean attention "
         "distance and entropy per layer and head, and each model's top-5."),
    Page("pages/anatomy.py", "Anatomy", ":material/biotech:", "anatomy",
         "one model's RoPE taken apart on one image: an attention logit pair by pair (with its same-position and "
         "content-removed counterfactuals), which frequencies each head uses (positional, semantic or mixed), a "
         "self-check of the rotation, frequency coverage of the image, and token norms and attention sinks."),
    Page("pages/resolution.py", "Resolution", ":material/zoom_out_map:", "resolution",
         "accuracy against input size for several models and position methods at once (held-out scenes in zoom "
         "or canvas mode, or your image folder), the paper's reported numbers beside hub models, attention "
         "statistics against size, CSV and JSON."),
    Page("pages/features.py", "Features", ":material/palette:", "features",
         "dense features of one or two models at several resolutions: PCA colours on one basis, the cosine "
         "similarity of a clicked patch, and a label-free stability curve against the training resolution."),
    Page("pages/attribution.py", "Attribution", ":material/ads_click:", "attribution",
         "Integrated Gradients, saliency, SmoothGrad, occlusion, Grad-CAM and rollout for one or two models, "
         "with a sanity check against randomly initialised weights."),
)


def url_paths() -> list[str]:
    """Every URL a user can open: '/', '/home' (the default page's second name) and each page's path."""
    return ["/", "/home"] + [f"/{p.url_path}" for p in PAGES]
