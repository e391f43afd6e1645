"""The Kubeflow pipeline: the DAG (``product_gan``), its settings (``settings``), overrides, submission."""
