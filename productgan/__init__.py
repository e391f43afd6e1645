"""productgan: product photos in, a registered class-conditional GAN that makes and edits products out.

Kept import-light: `productgan --help` must answer fast, so torch and friends load inside functions.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(model_uri: str, **kwargs: Any) -> Any:
    """Load a generator (``models:/product-gan@champion``, a run URI or a checkpoint folder) for Python use."""
    from productgan.serve.api import load as _load

    return _load(model_uri, **kwargs)
