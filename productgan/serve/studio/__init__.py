"""The product studio: a web page over the registered generator (``productgan studio``).

``models``: which generators are served (champion and challenger from the registry, or a checkpoint);
``app``: the FastAPI app (the page and its JSON API); ``static/``: the page itself (HTML, JS, CSS; no build).
"""
