"""MLflow "model from code" entry point: the logged model is this file plus the productgan code (code_paths).

Loading runs this file instead of unpickling a Python object; ``ProductGANModel.load_context`` then reads the
generator weights with safetensors. Not meant to be imported by productgan itself.
"""

from mlflow.models import set_model

from productgan.serve.pyfunc import ProductGANModel

set_model(ProductGANModel())
