"""The product: a trained generator served to people and programs.

api.py            ``productgan.load(uri).generate(...)``: ProductGenerator, GenerateParams
edit_request.py   the Edits and LatentEdits fields (CLI options, served columns, studio form)
edit.py           the image edits (colour, size, angle) after generation
mask.py           which pixels are the product: background region and shadows, or a cut-out's alpha
latent.py         edits through the generator: principal latent directions (SeFa)
project.py        a photo projected into the generator's latent space (ProjectParams)
outputs.py        the files ``productgan generate --out`` and the studio's ZIP hold
pyfunc.py         the MLflow pyfunc model (what ``productgan serve`` and ``mlflow models serve`` run)
model_server.py   ``productgan serve``: MLflow's scoring app in-process, a guard in front
studio/           ``productgan studio``: the web page over the registered generators

Imports go one way: this package uses the pipeline's library (gan, ``productgan.render``, ``productgan.resolve``);
of the pipeline only the registry imports it, for the model it registers (``pyfunc.py``). The click commands
live with every other command in ``productgan/commands/`` (tests/test_foundation.py checks both).
"""
