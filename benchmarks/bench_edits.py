"""Colour edits on colour photos (benchmarks/RESULTS.md, "Edits on colour photos"): does recolour / hue / brightness
change only the product?

  python -m benchmarks.bench_edits [--generator DIR] [--compare OLD_CHECKOUT] [--figure]

On the rendered shop photo of ``benchmarks/product_photos.py`` (an anti-aliased bag with a handle, a white print
and a soft grey shadow, on white), lossless and through JPEG at several qualities: how many background pixels
(more than 2 px from the bag; the shadow and the handle's gap among them) each edit moves by more than one
level, by how much at most, and the share of the bag's pixels it changes. ``--compare`` runs the same on another
checkout's ``productgan/serve/edit.py`` (e.g. `git worktree add /tmp/old 6a630fa`, the mask before issue 32).
Also the mask's time per image at 64, 224 and 1024 px (median of 5, one thread). ``--figure`` draws
results/edits_colour.png: rendered photos and, with ``--generator``, generated colour products, each with its
mask, three edits and (with ``--compare``) the other checkout's recolour (images free to commit: nothing from
the catalogue sets).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from benchmarks.product_photos import cut_out, jpeg, shop_photo
from benchmarks.results_file import RESULTS_DIR, save_result

EDITS = ({"color": "navy"}, {"hue_shift": 120.0}, {"brightness": 0.6})
QUALITIES = (None, 95, 90, 85, 75)


def edit_module(checkout: Path | None) -> ModuleType:
    """This checkout's edit module, or another checkout's ``productgan/serve/edit.py`` loaded beside it."""
    if checkout is None:
        from productgan.serve import edit

        return edit
    spec = importlib.util.spec_from_file_location("other_edit", checkout / "productgan" / "serve" / "edit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_edit"] = module
    spec.loader.exec_module(module)
    return module


def background_kept(edit: ModuleType) -> list[dict[str, Any]]:
    photo, coverage, shadow = shop_photo()
    far = (coverage == 0) & ~ndimage.binary_dilation(coverage > 0, iterations=2)
    bag = (coverage == 1) & (np.asarray(photo).min(-1) < 220)
    rows = []
    for quality in QUALITIES:
        image = jpeg(photo, quality) if quality else photo
        before = np.asarray(image, float)
        for todo in EDITS:
            change = np.abs(np.asarray(edit.apply_edits(image, **todo), float) - before).max(-1)
            rows.append({"jpeg": quality or "lossless", "edit": todo, "background_px": int(far.sum()),
                         "background_moved": int((change[far] > 1).sum()),
                         "shadow_moved": int((change[far & (shadow > 0.1)] > 1).sum()),
                         "background_max_change": float(change[far].max()),
                         "bag_changed_share": float((change[bag] > 10).mean())})
    return rows


def mask_seconds(edit: ModuleType) -> dict[str, list[float]]:
    photo = shop_photo(256)[0]
    out = {}
    for size in (64, 224, 1024):
        image = photo.resize((size, size), Image.Resampling.LANCZOS)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            edit.product_mask(image)
            times.append(time.perf_counter() - t0)
        out[str(size)] = sorted(times)
    return out


def figure(generator: Path | None, out: Path, other: ModuleType | None) -> None:
    from productgan.render import labelled_grid, png_bytes
    from productgan.serve.edit import apply_edits, product_mask

    photo = shop_photo(96)[0]
    rows: list[tuple[str, Image.Image]] = [("rendered", photo), ("JPEG 85", jpeg(photo, 85)), ("cut-out", cut_out(96))]
    if generator is not None:
        from productgan.serve.api import load

        product = load(generator)
        for k, name in enumerate(product.categories[:3]):
            rows.append((f"generated {name}", product.generate(name, n=1, seed=k + 1)[0]))
    images, labels = [], []
    for title, image in rows:
        mask = Image.fromarray((product_mask(image) * 255).round().astype(np.uint8), "L")
        cells = [(title, image), ("mask", mask)] + [(", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                               for k, v in todo.items()), apply_edits(image, **todo))
                                                    for todo in EDITS]
        if other is not None:
            cells.append(("color navy, --compare", other.apply_edits(image, **EDITS[0])))
        for label, cell in cells:
            images.append(on_checkerboard(cell))
            labels.append(label)
    cols = 2 + len(EDITS) + (other is not None)
    out.write_bytes(png_bytes(labelled_grid(images, labels, cols=cols, cell=128)))
    print(f"wrote {out}")


def on_checkerboard(image: Image.Image) -> Image.Image:
    """RGBA shown over a light checkerboard (transparent parts visible); other modes as RGB."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    ys, xs = np.mgrid[0 : image.height, 0 : image.width]
    board = np.where(((ys // 8 + xs // 8) % 2)[..., None] == 0, 235, 205).repeat(3, -1).astype(np.uint8)
    base = Image.fromarray(board, "RGB")
    base.paste(image, (0, 0), image)
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, default=None, help="A colour generator folder for the figure.")
    ap.add_argument("--compare", type=Path, default=None, help="Another checkout whose edits to measure too.")
    ap.add_argument("--figure", action="store_true", help="Draw results/edits_colour.png.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    doc: dict[str, Any] = {}
    other = edit_module(args.compare) if args.compare else None
    for name, checkout, edit in (("this", None, edit_module(None)), ("compare", args.compare, other)):
        if edit is None:
            continue
        rows = background_kept(edit)
        seconds = mask_seconds(edit)
        doc[name] = {"checkout": str(checkout or "."), "rows": rows, "mask_seconds": seconds}
        print(f"{name} ({checkout or 'this checkout'}): mask ms (median of 5) "
              + ", ".join(f"{k} px {1000 * statistics.median(v):.1f}" for k, v in seconds.items()))
        for r in rows:
            print(f"  jpeg {r['jpeg']!s:8s} {str(r['edit']):24s} background moved {r['background_moved']:5d} of "
                  f"{r['background_px']} (shadow {r['shadow_moved']}), max {r['background_max_change']:.0f}; "
                  f"bag changed {r['bag_changed_share']:.3f}")
    save_result("edits", "colour_photos", doc)
    if args.figure:
        figure(args.generator, RESULTS_DIR / "edits_colour.png", other)


if __name__ == "__main__":
    main()
