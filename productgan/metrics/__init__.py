"""How good is a generator: the evaluate step's library.

step.py               the evaluate step: generator folder or URI in, metrics.json + grid.png out, logged to MLflow
evaluate.py           evaluate_generator / evaluate_samples / evaluate_folder (the API), EvaluateParams
catalog.py            the metrics, each one function registered with @metric (known and default lists derive)
frechet.py            Fréchet distance (FID's formula) in float64, exact for singular covariances
fid_infinity.py       FID∞ (Chong & Forsyth 2020): FID at several N, a line in 1/N, its value at infinite N
kid.py                unbiased KID (cubic polynomial kernel, random subsets)
precision_recall.py   improved precision / recall (k-NN manifolds)
diversity.py          per-category diversity ratio: the mode-collapse signal
domain_classifier.py  the dataset's own feature extractor (cached small CNN) for fd_domain & co.
inception.py          TF Inception (inception-2015-12-05) features with torch-fidelity's preprocessing (fp32/bf16)
cache.py              real-image feature cache keyed by extractor, data, split, N, resolution
tracking.py           MLflow: log metrics onto the training run
flatten.py            nested metric documents -> {name: number} (MLflow, KFP, register)
"""
