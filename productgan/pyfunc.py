"""The one old import path kept: model versions registered before the serving side moved to productgan/serve/.

Each registered version carries the ``model_code.py`` of its day, and before the move that file ran
``from productgan.pyfunc import ProductGANModel``. MLflow puts the version's bundled copy of productgan on
``sys.path``, but where productgan is already imported when the model loads (``productgan serve``,
``mlflow.pyfunc.load_model`` after ``import productgan``), Python finds ``productgan.pyfunc`` in this package,
not in that copy: without this module those versions would no longer load there (tests/test_serve.py,
``test_a_version_registered_before_the_move_still_serves``). Versions registered since name
``productgan.serve.pyfunc``. Delete this file when no version registered before the move is served any more.
"""

from productgan.serve.pyfunc import ProductGANModel

__all__ = ["ProductGANModel"]
