"""The studio's web app (FastAPI): one static page and a small JSON API over the served generators.

Every image comes from ``ProductGenerator.generate`` / ``.interpolate`` and ``productgan.render`` -- the
code ``productgan generate`` and the pyfunc model run -- and ZIPs from ``productgan.serve.outputs.generate_files``,
the files ``productgan generate --out`` writes. Requests are checked by the same calls as the pyfunc model
(``category_index``, ``check_request``, ``parse_edits``) under the same limits (params ``generate.max_n``,
``max_images``, ``max_megapixels``); a bad one gets HTTP 400 ``{"error": "..."}`` and the server goes on
serving. At most ``studio.concurrency`` requests make images at once and ``studio.queue`` wait, each at most
``studio.wait_s``; beyond that the answer is 503 with Retry-After (``Admission``).

Nothing a request names is read from the file system: requests name a model slot from a fixed list, and
the page's three files are read from the package once, at start.

    GET  /                 the page (and /studio.js, /studio.css)
    GET  /api/info         models (versions, metrics, lineage), categories, limits, edit fields
    POST /api/generate     {model, category, n, seed, truncation, edits} -> {images: [{name, png}], ...}
    POST /api/interpolate  {model, category, seeds: [a, b] | categories: [A, B], seed, steps, ...} -> {frames}
    POST /api/zip          as /api/generate -> a ZIP: the PNGs, grid.png and generate.json
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from productgan.redact import redact
from productgan.render import png_base64, safe_name
from productgan.serve.api import RequestError
from productgan.serve.edit_request import MAX_SIZE, EditError, Edits, whole_number
from productgan.serve.outputs import generate_files, image_name, zip_bytes
from productgan.serve.studio.models import Catalog, Slot, shown_source
from productgan.serve.studio.settings import StudioParams

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes of JSON a request may send; the largest real request is well under 1 KiB
PAGE_FILES = {"/": ("index.html", "text/html"), "/studio.js": ("studio.js", "text/javascript"),
              "/studio.css": ("studio.css", "text/css")}
GENERATE_FIELDS = ("model", "category", "n", "seed", "truncation", "edits")
INTERPOLATE_FIELDS = ("model", "category", "seeds", "categories", "seed", "steps", "truncation", "edits")
SECURITY_HEADERS = {
    # the page loads only its own files; images are data: URLs, downloads blob: URLs
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Problem(Exception):
    """A request refused before it reaches the generator (not JSON, too large, the studio busy ...)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class Admission:
    """At most ``concurrency`` requests make images at once; up to ``queue`` more wait for them, each at most
    ``wait_s``. Others are answered 503 with Retry-After at once, and so is a request that waited too long:
    one slow request delays a bounded number of others by a bounded time. Waiting happens on the event loop,
    so waiters hold no worker thread."""

    def __init__(self, settings: StudioParams) -> None:
        self.settings = settings
        self._running = asyncio.Semaphore(settings.concurrency)
        self.waiting = 0

    def _busy(self, why: str) -> Problem:
        retry = max(1, math.ceil(self.settings.wait_s))
        return Problem(503, f"the studio is busy ({why}); try again in {retry} s", {"Retry-After": str(retry)})

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.waiting >= self.settings.queue and self._running.locked():
            raise self._busy(f"{self.settings.concurrency} requests running and {self.waiting} waiting")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._running.acquire(), self.settings.wait_s)
        except TimeoutError:
            raise self._busy(f"no turn within studio.wait_s = {self.settings.wait_s:g} s") from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._running.release()


@dataclass(frozen=True)
class GenerateRequest:
    slot: Slot
    category: str  # as the generator spells it
    n: int
    seed: int
    truncation: float | None
    edits: Edits


def page_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (bytes, media type) of the page's files, read from the package once."""
    folder = resources.files("productgan.serve.studio") / "static"
    return {path: ((folder / name).read_bytes(), media) for path, (name, media) in PAGE_FILES.items()}


# --- reading requests ----------------------------------------------------------------------------------


async def read_json(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise Problem(415, "send the request as JSON (Content-Type: application/json)")
    length = request.headers.get("content-length") or "0"
    if not length.isdigit() or int(length) > MAX_BODY:
        raise Problem(413, f"the request is larger than {MAX_BODY} bytes")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise Problem(413, f"the request is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data, parse_constant=_not_a_json_number)
    except RecursionError:
        raise Problem(400, "the request nests too deeply; send a flat JSON object of fields") from None
    except ValueError as exc:
        raise Problem(400, f"the request is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise Problem(400, "the request must be a JSON object")
    return body


def _not_a_json_number(name: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON has not: a number field must be a finite number
    raise ValueError(f"{name} is not a JSON number; send a finite number, or null to leave the field out")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _only(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}")


def _number(value: Any, name: str) -> float | None:
    """A number from JSON or a form field ("" / null: not given)."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise RequestError(f"{name}={value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name}={value!r} is not a number") from None


def _or(value: Any, default: Any) -> Any:
    return default if _blank(value) else value


def _truncation(slot: Slot, body: dict[str, Any]) -> float | None:
    value = _number(body.get("truncation"), "truncation")
    return slot.product.params.truncation if value is None else value


def _edits(slot: Slot, value: Any) -> Edits:
    if _blank(value):
        return Edits()
    if not isinstance(value, dict):
        raise RequestError(f"edits must be an object of edit fields ({', '.join(edit_fields())}), got {value!r}")
    return slot.product.parse_edits({k: (None if _blank(v) else v) for k, v in value.items()})


def _slot(catalog: Catalog, body: dict[str, Any]) -> Slot:
    return catalog.get(_or(body.get("model"), catalog.slots()[0].key))


def _category(slot: Slot, value: Any) -> str:
    if _blank(value):
        raise RequestError("category is missing; choose a category")
    return slot.product.categories[slot.product.category_index(value)]


def parse_generate(catalog: Catalog, body: dict[str, Any]) -> GenerateRequest:
    """The checks the pyfunc model makes on a request row, with params.yaml's defaults for what is left out."""
    _only(body, GENERATE_FIELDS)
    slot = _slot(catalog, body)
    product, params = slot.product, slot.product.params
    category = _category(slot, body.get("category"))
    n, seed, truncation = product.check_request(
        _or(body.get("n"), params.n), _or(body.get("seed"), params.seed), _truncation(slot, body)
    )
    if n > params.max_images:
        raise RequestError(f"{n} images asked in one call; the limit is {params.max_images}: split the request")
    edits = _edits(slot, body.get("edits"))
    product.check_pixels(product.output_pixels(n, edits))
    return GenerateRequest(slot, category, n, seed, truncation, edits)


def _pair(value: Any, name: str) -> tuple[Any, Any] | None:
    if _blank(value):
        return None
    if not isinstance(value, list | tuple) or len(value) != 2 or any(_blank(v) for v in value):
        raise RequestError(f"{name} must be two values [a, b], got {value!r}")
    return value[0], value[1]


def interpolate_frames(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    _only(body, INTERPOLATE_FIELDS)
    slot = _slot(catalog, body)
    product, params = slot.product, slot.product.params
    seeds, categories = _pair(body.get("seeds"), "seeds"), _pair(body.get("categories"), "categories")
    steps = None if _blank(body.get("steps")) else whole_number(body["steps"], "steps")
    kwargs = {
        "category": None if _blank(body.get("category")) else _category(slot, body["category"]),
        "seeds": seeds,
        "categories": categories,
        "seed": _or(body.get("seed"), params.seed),
        "steps": steps if steps is not None else params.steps,
        "truncation": _truncation(slot, body),
        "edits": _edits(slot, body.get("edits")),
    }
    frames = product.interpolate_iter(**kwargs)  # each frame encoded and dropped in turn
    if categories is not None:
        ends = [product.categories[product.category_index(c)] for c in categories]
    else:
        ends = [f"seed {s}" for s in (seeds or (kwargs["seed"], kwargs["seed"]))]
    count = kwargs["steps"]
    return {
        **_model_fields(slot),
        "ends": ends,
        "frames": [{"t": i / (count - 1), "png": png_base64(image)} for i, image in enumerate(frames)],
    }


def _model_fields(slot: Slot) -> dict[str, Any]:
    return {"model": slot.key, "version": slot.version, "uri": slot.uri}


def generate_images(req: GenerateRequest) -> dict[str, Any]:
    images = req.slot.product.generate_iter(req.category, req.n, req.seed, req.truncation, req.edits)
    return {
        **_model_fields(req.slot),
        "category": req.category,
        "n": req.n,
        "seed": req.seed,
        "truncation": req.truncation,
        "edits": {k: v for k, v in vars(req.edits).items() if v not in (None, False)},
        "images": [{"name": image_name(req.category, req.seed, i), "png": png_base64(image)}
                   for i, image in enumerate(images)],
    }


def generate_zip(req: GenerateRequest) -> bytes:
    params = dataclasses.replace(req.slot.product.params, n=req.n, seed=req.seed, truncation=req.truncation)
    files = generate_files(req.slot.product, [req.category], params, req.edits, model=req.slot.uri)
    return zip_bytes(files)


def edit_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Edits)]


def info(catalog: Catalog) -> dict[str, Any]:
    catalog.refresh_soon()  # in the background: this answer comes from what is loaded now
    slots = catalog.slots()
    params = slots[0].product.params
    doc: dict[str, Any] = {
        "source": shown_source(catalog.source),
        "models": [s.describe() for s in slots],
        "defaults": {"n": params.n, "seed": params.seed, "truncation": params.truncation, "steps": params.steps},
        "limits": {"max_n": params.max_n, "max_images": params.max_images, "max_size": MAX_SIZE,
                   "max_megapixels": params.max_megapixels},
        "edits": edit_fields(),
        "warning": catalog.warning,
        "registry": None,
    }
    if catalog.registry is not None:
        import mlflow

        from productgan.registry.config import load_register_config

        cfg = load_register_config()
        doc["registry"] = {
            "model_name": catalog.model_name,
            "tracking_uri": redact(mlflow.get_tracking_uri()),
            "primary_metric": cfg.primary_metric,
            "greater_is_better": cfg.greater_is_better,
            "margin": cfg.margin,
        }
    return doc


# --- the app -------------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": redact(message)}, status_code=status, headers=headers)


async def _timed(work: Callable[[], dict[str, Any]]) -> JSONResponse:
    start = time.perf_counter()
    result = await run_in_threadpool(work)
    result["ms"] = round((time.perf_counter() - start) * 1000, 1)
    return JSONResponse(result)


def create_app(
    catalog: Catalog, allowed_hosts: list[str] | None = None, settings: StudioParams | None = None
) -> FastAPI:
    """The studio for ``catalog``; ``allowed_hosts`` (Host headers accepted; default any) stops a web page
    elsewhere from reaching a loopback studio through DNS rebinding; ``settings``: params.yaml ``studio``."""
    app = FastAPI(title="productgan studio", docs_url=None, redoc_url=None, openapi_url=None)
    admission = Admission(settings or StudioParams())
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"])
    files = page_files()

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        return _error(exc.status, str(exc), exc.headers)

    @app.exception_handler(RequestError)
    @app.exception_handler(EditError)
    async def bad_request(request: Request, exc: ValueError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> JSONResponse:
        log.exception("studio: %s %s failed", request.method, request.url.path)
        return _error(500, f"the studio failed on this request ({type(exc).__name__}: {exc}); see its log")

    for path, (body, media) in files.items():
        def page(body: bytes = body, media: str = media) -> Response:
            return Response(body, media_type=f"{media}; charset=utf-8")

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    @app.get("/api/info")
    async def get_info() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(info, catalog))

    @app.post("/api/generate")
    async def post_generate(request: Request) -> JSONResponse:
        req = parse_generate(catalog, await read_json(request))
        async with admission.slot():
            return await _timed(lambda: generate_images(req))

    @app.post("/api/interpolate")
    async def post_interpolate(request: Request) -> JSONResponse:
        body = await read_json(request)
        async with admission.slot():
            return await _timed(lambda: interpolate_frames(catalog, body))

    @app.post("/api/zip")
    async def post_zip(request: Request) -> Response:
        req = parse_generate(catalog, await read_json(request))
        async with admission.slot():
            data = await run_in_threadpool(generate_zip, req)
        name = f"productgan_{safe_name(req.category)}_{req.seed}.zip"
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return app
