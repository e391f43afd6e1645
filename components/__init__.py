"""Kubeflow components: one module per pipeline step (plus the retraining check).

Each module holds a lightweight KFP component whose body runs the step's own CLI (``python -m productgan
<step> ...``) inside the project image, and ``component(image)`` that builds it for a given image. The same
components run on a cluster and under ``kfp.local.SubprocessRunner`` (``productgan pipeline run-local``).
Helpers that run inside the pods live in ``components.runtime``.
"""
