"""run-settings: the run's params.yaml = the ``params`` parameter with the typed run parameters applied.

The first step of every run; every other step reads its output, so all of them (and the lineage the model
records) see the very same settings. See ``pipelines.run_parameters``.
"""

from kfp import dsl
from kfp.dsl.python_component import PythonComponent


def run_settings(params: str, recipe: str, steps: int, max_minutes: float, resolution: int, eval_n: int) -> str:
    """``params`` (params.yaml content) with train.recipe, train.steps, train.max_minutes (0 = no budget),
    preprocess.resolution and evaluate.n set from the typed parameters; returned as one-line JSON."""
    from components.runtime import parse_params
    from pipelines.run_parameters import apply_run_parameters, params_json

    values = {"recipe": recipe, "steps": steps, "max_minutes": max_minutes, "resolution": resolution,
              "eval_n": eval_n}
    effective = apply_run_parameters(parse_params(params), values)
    print(f">> run parameters: {values}", flush=True)
    return params_json(effective)


def component(image: str) -> PythonComponent:
    return dsl.component(run_settings, base_image=image, install_kfp_package=False)
