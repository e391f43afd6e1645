"""MLflow registration and champion/challenger promotion of the trained generator.

``log``: the generator as a pyfunc model version with its lineage; ``promote``: the rules that move the
``champion`` alias; ``lock``: serialises alias moves across processes; ``store``: tracking-store setup.
Import-light on purpose: mlflow loads inside the functions that need it.
"""
