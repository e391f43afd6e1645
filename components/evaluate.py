"""evaluate: generator + held-out data -> metrics (KFP Metrics), a markdown report with the sample grid."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent


def evaluate(
    params: str,
    dataset_version: str,
    generator: Input[Model],
    prepared: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    add_metrics: str = "",
):
    """``productgan evaluate --generator GENERATOR --data PREPARED --out EVALUATION`` with the run's params.

    ``add_metrics`` (comma list) joins ``evaluate.metrics``: what the pipeline adds when this step has a GPU
    (``pipeline.evaluate_gpu_metrics``). The Inception metrics are in the default list; ``evaluate.fid_n: auto``
    runs them at 10,000 a side on a GPU and at ``fid_n_cpu`` on a CPU. The real statistics come from the cache
    volume the pipeline mounts (``$PRODUCTGAN_CACHE``)."""
    import glob
    import json
    import os

    from components.runtime import (
        metrics_table,
        parse_params,
        png_markdown,
        require_tracking_uri,
        run_step,
        step_workdir,
        with_params,
    )
    from productgan.metrics.flatten import flatten_numbers

    require_tracking_uri("evaluate")
    extra = [m.strip() for m in add_metrics.split(",") if m.strip()]
    if extra:
        from productgan.metrics.evaluate import EvaluateParams
        from productgan.params import section_of

        chosen = section_of(parse_params(params), "evaluate", EvaluateParams).metrics
        params = with_params(params, {"evaluate.metrics": chosen + [m for m in extra if m not in chosen]})
    with step_workdir(params, dataset_version) as work:
        run_step("evaluate", ["--generator", generator.path, "--data", prepared.path, "--out", evaluation.path], work)

    with open(os.path.join(evaluation.path, "metrics.json"), encoding="utf-8") as fh:
        numbers = flatten_numbers(json.load(fh))
    for name, value in numbers.items():
        metrics.log_metric(name, value)

    grids = sorted(glob.glob(os.path.join(evaluation.path, "*.png"))) or sorted(
        glob.glob(os.path.join(generator.path, "grid.png"))
    )
    images = "\n\n".join(f"**{os.path.basename(p)}**\n\n{png_markdown(p, os.path.basename(p))}" for p in grids)
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(
            "# productgan evaluation\n\n"
            f"Dataset version `{dataset_version}`.\n\n{metrics_table(numbers)}\n\n"
            f"## Samples\n\n{images or '_no sample grid was written_'}\n"
        )


def component(image: str) -> PythonComponent:
    return dsl.component(evaluate, base_image=image, install_kfp_package=False)
