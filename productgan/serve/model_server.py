"""`productgan serve`: MLflow's own scoring server for the registered pyfunc model (``/invocations``,
``/ping``, ``/health``, ``/version``: what `mlflow models serve` answers), run in this process under uvicorn,
with a guard in front and the limits of params.yaml's ``generate`` section.

Why not `mlflow models serve` itself: it starts ``uvicorn`` by name (a shell that has not activated the
virtualenv answers "return code 127"), it reads no params.yaml, and MLflow's JSON parser answers a request
that nests deeper than Python's recursion limit with a bare 500. The guard answers that with a 400 naming
the problem, and a body over ``MAX_BODY`` with a 413, before MLflow reads it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from productgan.serve.api import GenerateParams

log = logging.getLogger(__name__)

# The largest request body: a full call (max_images rows, each with a 512-number latent as text) is ~2 MiB.
MAX_BODY = 8 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: reads a POST body (at most ``max_body`` bytes, else 413), refuses JSON nested beyond
    what Python's parser can follow (400, MLflow's error shape), then hands the body on unchanged."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _refuse(send, 413, f"the request is larger than {self.max_body} bytes; split it")
                return
            if not message.get("more_body", False):
                break
        if _is_json(scope) and _too_deep(bytes(body)):
            await _refuse(send, 400, "the request nests too deeply to read; send dataframe_records: a list of "
                                     "flat request rows")
            return
        handed_on = False

        async def replay() -> Message:
            nonlocal handed_on
            if handed_on:
                return await receive()
            handed_on = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/json"


def _too_deep(body: bytes) -> bool:
    """Whether Python's JSON parser gives up on ``body`` for its depth (MLflow's would raise RecursionError)."""
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:  # not JSON at all: MLflow answers that itself, with a 400
        return False
    return False


async def _refuse(send: Send, status: int, message: str) -> None:
    code = "INVALID_PARAMETER_VALUE" if status == 400 else "RESOURCE_LIMIT_EXCEEDED"
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(model_uri: str, params: GenerateParams) -> RequestGuard:
    """MLflow's scoring app for ``model_uri`` with ``params`` as the pyfunc's model_config, behind the guard."""
    from mlflow.pyfunc import load_model
    from mlflow.pyfunc.scoring_server import init

    model = load_model(model_uri, model_config=dataclasses.asdict(params))
    return RequestGuard(init(model))
