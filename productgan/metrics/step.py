"""The evaluate step: a generator (folder or MLflow URI) in; metrics.json and grid.png out, logged on the
training run. `productgan evaluate` is this function behind a command line."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from productgan.metrics.evaluate import EvaluateParams, evaluate_folder
from productgan.redact import redact

log = logging.getLogger("productgan.evaluate")

METRICS_FILE = "metrics.json"
GRID_FILE = "grid.png"
GRID_LABEL_WIDTH = 90  # pixels for the category names left of the grid's rows


def evaluate_step(
    generator_ref: str, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: EvaluateParams,
    git_commit: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Score ``generator_ref`` on ``data_dir``; write ``out_dir``/metrics.json and grid.png (one row of seeded
    samples per category) and log both on the training run (kept for `productgan sync-run` while MLflow does not
    answer). Returns (metrics, the MLflow run id they were logged to, or None)."""
    from productgan.gan.sample import category_grid
    from productgan.io import atomic_write_bytes, atomic_write_json
    from productgan.metrics.tracking import log_to_training_run
    from productgan.render import name_rows, png_bytes
    from productgan.resolve import local_generator_dir

    out = Path(out_dir)
    with local_generator_dir(generator_ref) as folder:
        result, generator, config = evaluate_folder(folder, data_dir, params)
        # timings go to the log, not to metrics.json: the same generator and data give the same file
        seconds = result["meta"].pop("seconds", {})
        log.info("evaluate: seconds %s", ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
        result["meta"]["generator_ref"] = redact(generator_ref)
        result["meta"]["git_commit"] = git_commit
        atomic_write_json(out / METRICS_FILE, result)
        grid = category_grid(generator, len(config.categories), params.grid_per_category, params.seed,
                             config.latent_dim, params.truncation, pad=0)
        picture = name_rows(grid, list(config.categories), config.frame[0], GRID_LABEL_WIDTH)
        atomic_write_bytes(out / GRID_FILE, png_bytes(picture))
        run_id, missing = log_to_training_run(result, folder, generator_ref, out, params.cache_dir)
    if missing:
        from productgan.tracking import SYNC_COMMAND

        log.warning("evaluate: MLflow does not answer; nothing is lost: %s of run %s are kept and sent by `%s` "
                    "once it answers (metrics.json is written)", missing, run_id, SYNC_COMMAND)
    return result, None if missing else run_id
