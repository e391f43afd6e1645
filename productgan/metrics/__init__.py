"""How good is a generator: the evaluate step's library.

evaluate.py           evaluate_generator / evaluate_samples (the API), EvaluateParams (params.yaml `evaluate`)
frechet.py            Fréchet distance (FID's formula) in float64, exact for singular covariances
kid.py                unbiased KID (cubic polynomial kernel, random subsets)
precision_recall.py   improved precision / recall (k-NN manifolds)
diversity.py          per-category diversity ratio: the mode-collapse signal
domain_classifier.py  the dataset's own feature extractor (cached small CNN) for fd_domain & co.
inception.py          TF Inception (inception-2015-12-05) features with torch-fidelity's preprocessing
cache.py              real-image feature cache keyed by extractor, data, split, N, resolution
tracking.py           MLflow: fetch a generator by model URI, log metrics onto the training run
grid.py               one-row-per-category sample grid
"""
