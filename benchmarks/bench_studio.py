"""The studio from a person's side: time from clicking Generate to the images shown, and the page's weight.

Run: PYTHONPATH=$PWD python benchmarks/bench_studio.py [--repeat 7] [--json benchmarks/results/studio.json]
     [--model URI | --checkpoint DIR] [--screenshot docs/studio.png]

Starts `productgan studio` on 127.0.0.1 and drives it in headless Chromium (tests/studio_browser.py): 16
images of one category with edits (recolour, rotate, scale), the click-to-image time as the page measures it
(click handler to every image decoded), with the server's own time beside it. Without --model/--checkpoint
it measures random-weight generators of the default size (dcgan, latent 128, base 64) at 28 px and 64 px:
speed does not depend on the weights. --screenshot saves the page after generating (PNG).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the studio/browser helpers of the test suite
from studio_browser import chromium, env_for_cli, missing_browser, start_studio, stop, wait_for  # noqa: E402

EDITS = {"color": "#c81e1e", "rotate": "15", "scale": "0.9"}
CATEGORY = "Dress"
N = 16
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def random_generator(resolution: int, out: Path) -> Path:
    import torch

    from productgan.gan.config import GeneratorConfig
    from productgan.gan.export import save_generator
    from productgan.gan.networks import build_generator

    torch.manual_seed(0)
    cfg = GeneratorConfig(resolution=resolution, categories=CATEGORIES)
    generator = build_generator(cfg)
    for module in generator.modules():  # PyTorch's default init: visible shapes, so the edits have a product
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return save_generator(generator.eval(), cfg, out)


def page_weight(url: str) -> dict[str, int]:
    sizes = {}
    for path in ("/", "/studio.js", "/studio.css"):
        with urllib.request.urlopen(f"{url}{path}", timeout=30) as resp:
            body = resp.read()
        sizes[path] = len(body)
        sizes[f"{path} gzip"] = len(gzip.compress(body, 9))
    sizes["total"] = sum(v for k, v in sizes.items() if not k.endswith("gzip"))
    sizes["total gzip"] = sum(v for k, v in sizes.items() if k.endswith("gzip"))
    return sizes


def fill(driver: Any, category: str, n: int, seed: int, edits: dict[str, str]) -> None:
    driver.execute_script(
        "const [c, n, s, e] = arguments;"
        "document.querySelector('#category').value = c;"
        "document.querySelector('#n').value = n; document.querySelector('#seed').value = s;"
        "for (const [k, v] of Object.entries(e)) document.querySelector(`[data-edit='${k}']`).value = v;",
        category, str(n), str(seed), edits,
    )


def click_to_image(driver: Any) -> tuple[float, list[float], int]:
    """(page ms from click to all images decoded, server ms per model column, images shown)."""
    before = driver.execute_script("return document.querySelector('#status').dataset.run || '0'")
    driver.find_element("id", "generate").click()
    wait_for(driver, f"(document.querySelector('#status').dataset.run || '0') !== '{before}'", timeout=300)
    message = driver.find_element("id", "message")
    if message.is_displayed():
        raise RuntimeError(f"the page says: {message.text}")
    status = driver.execute_script("return Object.assign({}, document.querySelector('#status').dataset)")
    server = driver.execute_script(
        "return Array.from(document.querySelectorAll('.timing')).map(t => Number(t.dataset.serverMs))")
    return float(status["ms"]), server, int(status["images"])


def take_screenshot(driver: Any, category: str, columns: int, path: Path) -> None:
    """The page after generating red, rotated products and a category interpolation strip, as a small PNG."""
    from PIL import Image

    fill(driver, category, N, 7, {"color": "#c81e1e", "rotate": "15", "scale": ""})
    click_to_image(driver)
    driver.execute_script(
        "const [c] = arguments; document.querySelector('#interp-mode').value = 'categories';"
        "const b = document.querySelector('#category-b');"
        "b.value = Array.from(b.options).map(o => o.value).find(v => v !== c && /coat/i.test(v)) || b.options[1].value;"
        "document.querySelector('#steps').value = '7';", category)
    driver.find_element("id", "interpolate").click()
    wait_for(driver, f"document.querySelectorAll('.strip img').length === {7 * columns}", timeout=300)
    driver.execute_script("window.scrollTo(0, 0)")
    png = driver.get_screenshot_as_png()
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png)) as shot:  # a 256-colour palette keeps the committed file small
        shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def measure(label: str, args: list[str], repeat: int, screenshot: Path | None, workdir: Path) -> dict[str, Any]:
    proc, url = start_studio(args, cwd=workdir, env=env_for_cli())
    driver = chromium(width=1280, height=1000)
    try:
        driver.get(url)
        wait_for(driver, "document.body.dataset.ready === 'true'")
        info = json.loads(urllib.request.urlopen(f"{url}/api/info", timeout=30).read())
        category = CATEGORY if CATEGORY in info["models"][0]["categories"] else info["models"][0]["categories"][0]
        page, server, shown = [], [], 0
        for i in range(repeat + 1):  # the first click warms up (allocator, thread pools)
            fill(driver, category, N, 100 + i, EDITS)
            ms, server_ms, shown = click_to_image(driver)
            if i:
                page.append(ms)
                server.append(max(server_ms))
        if screenshot is not None:
            take_screenshot(driver, category, len(info["models"]), screenshot)
        return {
            "what": label, "models": [m["key"] for m in info["models"]],
            "resolution": info["models"][0]["resolution"], "images_shown": shown, "category": category,
            "edits": EDITS, "click_to_image_ms": page, "server_ms": server,
            "median_click_to_image_ms": statistics.median(page), "median_server_ms": statistics.median(server),
            "page_weight_bytes": page_weight(url),
        }
    finally:
        driver.quit()
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--model", help="measure this MLflow model URI (champion and challenger side by side)")
    parser.add_argument("--checkpoint", help="measure this generator folder")
    parser.add_argument("--screenshot", type=Path, help="save the page after generating (PNG)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    reason = missing_browser()
    if reason:
        sys.exit(reason)

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        work = Path(tmp)
        if args.model or args.checkpoint:
            cli = ["--model", args.model] if args.model else ["--checkpoint", str(Path(args.checkpoint).resolve())]
            results.append(measure(args.model or args.checkpoint, cli, args.repeat, args.screenshot, work))
        else:
            for resolution in (28, 64):
                folder = random_generator(resolution, work / f"g{resolution}")
                shot = args.screenshot if resolution == 28 else None
                results.append(measure(f"random dcgan {resolution} px", ["--checkpoint", str(folder)],
                                       args.repeat, shot, work))
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, nproc {os.cpu_count()}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    print(f"{doc['date']}, {doc['machine']}, load average before {doc['load_average_before']}, "
          f"after {doc['load_average_after']}")
    print(f"\n16 images of one category, edits {EDITS}; median of {args.repeat} clicks (after one warm-up)\n")
    print("| generator | models shown | images | click to image, median ms (min-max) | server median ms |")
    print("|---|---|---|---|---|")
    for r in results:
        page = r["click_to_image_ms"]
        print(f"| {r['what']} | {', '.join(r['models'])} | {r['images_shown']} | {r['median_click_to_image_ms']:.0f} "
              f"({min(page):.0f}-{max(page):.0f}) | {r['median_server_ms']:.0f} |")
    weight = results[0]["page_weight_bytes"]
    print(f"\npage weight: {weight['total']} bytes ({weight['total gzip']} gzipped): "
          + ", ".join(f"{k} {v}" for k, v in weight.items() if not k.startswith("total")))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
