"""The HTTP API (FastAPI), and running it with uvicorn, with TLS 1.3+ when a certificate is configured.

Endpoints (every ``/v1`` call needs ``Authorization: Bearer <token>`` allowed for its domain):

- ``POST /v1/{domain}/predict``  ``{"text": str}`` -> label, score, scores (classification domains)
- ``POST /v1/{domain}/generate`` ``{"prompt": str, "max_new_tokens": int?}`` -> text (causal LM domains)
- ``POST /v1/{domain}/complete`` ``{"prompt": str, "grammar": "python"|"json", "max_new_tokens": int?}`` -> text
  that parses, or ``finished: false`` (causal LM domains; ``pipelines.code.serving``)
- ``POST /v1/{domain}/feedback`` ``{"request_id": str, "rating": 1-5, "correction": str?}`` -> 201
- ``GET /healthz`` (process up; open), ``GET /readyz`` (every served domain has a model: open, but which
  models and artifacts are served, and which promotion was refused, only with a token), ``GET /metrics``
  (any valid token)

Every answer carries ``request_id``, ``model_version``, ``artifact_id`` and ``promotion``. Errors are
``{"error": <code>, "detail": <what to do>}``: 400 malformed JSON or sensitive input, 401 no/unknown
token, 403 token not allowed for the domain, 404 unknown domain/endpoint/request id, 409 feedback
given already, 408 a request head or body that did not arrive in time, 413 body or text too large, 415 a
body declared in a charset other than UTF-8, 422 fields of the wrong type or range, 431 a request head too
large, 503 no model yet, the server is stopping, too many connections, or the object store is unavailable
(with ``Retry-After``). The limits that apply before authentication are in ``pipelines.serving.limits``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the handlers' string annotations here

from pipelines.code.serving import add_code_routes
from pipelines.serving.batching import BatcherClosed
from pipelines.serving.engine import EngineError
from pipelines.serving.feedback import FeedbackError, write_feedback
from pipelines.serving.limits import ARRIVAL, server_limits
from pipelines.serving.service import ModelService
from pipelines.storage import StorageError

log = logging.getLogger("pipelines.serving.http")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


class _Measure:
    """Pure ASGI middleware: request counts and latency per domain and endpoint.

    Latency runs from the first byte of the request (``limits.ARRIVAL``, set by the protocol), so the time a
    request waited to be read and scheduled on a busy event loop counts, as does the batch queue.

    Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and streams; at
    thousands of requests per second on two cores that overhead is a visible share of the CPU the
    event loop competes for with inference.
    """

    def __init__(self, app: Any, *, service: ModelService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = (scope.get("extensions") or {}).get(ARRIVAL) or time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            parts = scope["path"].strip("/").split("/")
            if len(parts) == 3 and parts[0] == "v1":
                service = self.service
                domain = parts[1] if parts[1] in service.domains else "unknown"
                endpoint = parts[2] if parts[2] in ("predict", "generate", "feedback", "complete") else "other"
                elapsed = time.perf_counter() - started
                service.metrics.requests.labels(domain, endpoint, str(status)).inc()
                if status < 400 and endpoint != "feedback":
                    service.metrics.latency.labels(domain, endpoint).observe(elapsed)
                    service.latency.observe(elapsed)


def _models():
    from pydantic import BaseModel, ConfigDict, Field

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        text: str = Field(min_length=1)

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        prompt: str = Field(min_length=1)
        max_new_tokens: int | None = Field(default=None, ge=1)

    class FeedbackRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        request_id: str = Field(min_length=1, max_length=128)
        rating: int = Field(ge=1, le=5)
        correction: str | None = None

    return PredictRequest, GenerateRequest, FeedbackRequest


def create_app(service: ModelService) -> Any:
    """The FastAPI application over a started (or startable) ``ModelService``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from pydantic import ValidationError
    from starlette.requests import ClientDisconnect

    from pipelines.clean.text import strip_invisible

    PredictRequest, GenerateRequest, FeedbackRequest = _models()
    config = service.config

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await service.aclose()

    app = FastAPI(title="mlops model serving", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect):
        # Expected on the internet: nobody is left to answer, and a traceback would only hide real errors.
        log.info("client went away before its request body was read (%s %s)", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(StorageError)
    async def _store_down(request: Request, exc: StorageError):
        log.warning("object store unavailable for %s %s: %s", request.method, request.url.path, exc)
        return store_unavailable()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A bug: the log gets the traceback, the client a JSON error without one.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal", "detail": "an unexpected error; it was logged"}, status_code=500)

    def store_unavailable() -> Any:
        return JSONResponse({"error": "store_unavailable", "detail": "the object store did not answer in time; "
                                                                     "nothing was stored, retry later"},
                            status_code=503, headers={"Retry-After": str(config.retry_after_seconds)})

    app.add_middleware(_Measure, service=service)

    challenge = {"WWW-Authenticate": 'Bearer realm="mlops"'}

    def bearer(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'", challenge)
        return token.strip()

    def authenticated(request: Request) -> bool:
        """Whether the request carries a known token (any domain); never raises."""
        try:
            return service.tokens.domains_for(bearer(request)) is not None
        except ApiError:
            return False

    def authorize(request: Request, domain: str) -> None:
        allowed = service.tokens.allows(bearer(request), domain)
        if allowed is None:
            raise ApiError(401, "unauthorized", "unknown token", challenge)
        if not allowed:
            raise ApiError(403, "forbidden", f"this token may not call domain {domain!r}")
        if domain not in service.domains:
            raise ApiError(404, "unknown_domain", f"domain {domain!r} is not served here; "
                                                  f"served: {', '.join(sorted(service.domains))}")

    async def body(request: Request, model: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise ApiError(413, "too_large", f"request body over {config.max_body_bytes} bytes")
        charset = _charset(request.headers.get("content-type", ""))
        if charset not in ("", "utf-8", "utf8"):
            raise ApiError(415, "unsupported_charset", f"the body is declared {charset!r}: send JSON in UTF-8")
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > config.max_body_bytes:
                raise ApiError(413, "too_large", f"request body over {config.max_body_bytes} bytes")
        try:
            # Decoded here, strictly: json.loads(bytes) would also guess UTF-16 and UTF-32.
            data = json.loads(bytes(raw).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "malformed_json", "the body is not valid JSON (UTF-8)") from None
        except RecursionError:
            raise ApiError(400, "malformed_json", "the body nests too deeply") from None
        if not isinstance(data, dict):
            raise ApiError(400, "malformed_json", "the body must be a JSON object")
        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise ApiError(422, "invalid_input", problems) from None
        for name in ("text", "prompt", "correction"):
            value = getattr(parsed, name, None)
            if isinstance(value, str) and len(value) > config.max_input_chars:
                raise ApiError(413, "too_large", f"{name} has {len(value)} characters; the limit is "
                                                 f"{config.max_input_chars}")
        return parsed

    def screened_input(domain: str, text: str) -> str:
        """The text as the model gets it: cleaned as ingestion cleans, then checked against the lexicon."""
        if service.input_filter is None:
            text = strip_invisible(text)
            if not text.strip():
                raise ApiError(400, "empty_input", "the text is empty once whitespace and invisible characters go")
            return text
        check = service.input_filter.check(text)
        if not check.text.strip():
            raise ApiError(400, "empty_input", "the text is empty once whitespace, markup and invisible characters go")
        if not check.categories:
            return check.text  # the cleaned text: what the lexicon saw is what the model gets
        action = "masked" if service.input_filter.policy == "mask" else "rejected"
        service.metrics.input_rejected.labels(domain, action).inc()
        if action == "rejected":
            log.info("input rejected in %s: sensitive categories %s", domain, ",".join(check.categories))
            raise ApiError(400, "sensitive_input", "the input holds sensitive terms (categories: "
                                                   f"{', '.join(check.categories)}); rephrase it")
        return check.text

    def require_task(domain: str, task: str, endpoint: str) -> None:
        actual = service.domains[domain]
        if actual != task:
            other = "predict" if actual == "classification" else "generate"
            raise ApiError(404, "wrong_endpoint", f"domain {domain!r} is {actual}: use /v1/{domain}/{other}, "
                                                  f"not /{endpoint}")
        if domain not in service.served:
            raise ApiError(503, "no_model", f"no model is loaded for {domain!r} yet (nothing promoted, or refused)")

    async def infer(domain: str, payload: Any) -> Any:
        try:
            return await service.batcher(domain).submit(payload)
        except BatcherClosed:
            raise ApiError(503, "shutting_down", "the server is stopping; retry on another instance") from None

    def stamp(served: Any) -> dict[str, Any]:
        return {"domain": served.domain, "model_version": served.version, "artifact_id": served.artifact_id,
                "promotion": served.promotion}

    @app.post("/v1/{domain}/predict")
    async def predict(domain: str, request: Request):
        authorize(request, domain)
        parsed = await body(request, PredictRequest)
        require_task(domain, "classification", "predict")
        text = screened_input(domain, parsed.text)
        served, prediction = await infer(domain, text)
        request_id = uuid.uuid4().hex
        service.requests.remember(request_id=request_id, domain=domain, model_version=served.version,
                                  question=text, answer=prediction.label)
        return {"request_id": request_id, **stamp(served), "label": prediction.label, "score": prediction.score,
                "scores": prediction.scores}

    @app.post("/v1/{domain}/generate")
    async def generate(domain: str, request: Request):
        authorize(request, domain)
        parsed = await body(request, GenerateRequest)
        require_task(domain, "causal_lm", "generate")
        budget = parsed.max_new_tokens or config.max_new_tokens
        if budget > config.max_new_tokens:
            raise ApiError(422, "invalid_input", f"max_new_tokens: at most {config.max_new_tokens}")
        prompt = screened_input(domain, parsed.prompt)
        current = service.served.get(domain)
        if current is not None and current.engine is not None:  # continuous batching: no batch to wait for
            try:
                served, output, screen = await asyncio.get_running_loop().run_in_executor(
                    None, service.generate_on_engine, domain, prompt, budget)
            except EngineError as exc:
                raise ApiError(503, "engine_unavailable", f"the generation engine failed: {exc}; retry") from None
        else:
            served, output, screen = await infer(domain, (prompt, budget))
        text = screen.text if screen is not None else output.text
        withheld = bool(screen and screen.withheld)
        if withheld:
            service.metrics.screened.labels(domain).inc()
        request_id = uuid.uuid4().hex
        service.requests.remember(request_id=request_id, domain=domain, model_version=served.version,
                                  question=prompt, answer=text)
        return {"request_id": request_id, **stamp(served), "text": text, "tokens": output.tokens,
                "withheld": withheld}

    # POST /v1/{domain}/complete: grammar-constrained code completion (issue 18, pipelines/code/serving.py).
    add_code_routes(app, service=service, authorize=authorize, body=body, require_task=require_task, stamp=stamp,
                    api_error=ApiError)

    @app.post("/v1/{domain}/feedback", status_code=201)
    async def feedback(domain: str, request: Request):
        authorize(request, domain)
        parsed = await body(request, FeedbackRequest)
        exchange = service.requests.get(parsed.request_id)
        if exchange is None or exchange.domain != domain:
            raise ApiError(404, "unknown_request", f"request {parsed.request_id!r} is unknown here or expired "
                                                   f"(kept {config.feedback_ttl_seconds:.0f} s)")
        # The write runs to its end (bounded: serving.store_timeout_seconds x store_max_attempts) before the
        # answer, so a request answered 503 has written nothing; a create-only retry cannot double-count.
        try:
            key = await asyncio.get_running_loop().run_in_executor(None, lambda: write_feedback(
                service.store, request_id=exchange.request_id, domain=domain, model_version=exchange.model_version,
                question=exchange.question, answer=exchange.answer, rating=parsed.rating,
                correction=parsed.correction, landing_prefix=service.landing_prefix))
        except FeedbackError as exc:
            raise ApiError(exc.status, "feedback_refused", str(exc)) from None
        except StorageError as exc:
            log.warning("feedback for %s not stored: the object store is unavailable: %s", domain, exc)
            return store_unavailable()
        return {"request_id": exchange.request_id, "stored": key, "model_version": exchange.model_version}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request):
        ready = service.ready
        answer: dict[str, Any] = {"ready": ready}
        if authenticated(request):  # which models and artifacts run is for callers with a token only
            answer.update(service.describe())
        return JSONResponse(answer, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request):
        if not authenticated(request):
            raise ApiError(401, "unauthorized", "/metrics needs 'Authorization: Bearer <token>' (any serving token)",
                           challenge)
        service.check_latency()
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    return app


def _charset(content_type: str) -> str:
    """The ``charset`` parameter of a Content-Type header, lower-cased ('' when none)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return ""


def tls_context(*, cert: str, key: str) -> ssl.SSLContext:
    """A server context that accepts TLS 1.3 and newer only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certfile=cert, keyfile=key)
    return context


def build_server(service: ModelService, *, sockets: list | None = None, log_level: str = "warning",
                 limits: bool = True) -> Any:
    """A ``uvicorn.Server`` for the app (call ``.run(sockets=...)``); TLS 1.3+ when the config has a certificate.

    ``limits=False`` leaves out the limits before authentication (``limits.server_limits``): for the
    benchmark that measures what they cost, never for serving.
    """
    import uvicorn

    config = service.config
    kwargs: dict[str, Any] = {}
    if config.tls:
        kwargs = {"ssl_certfile": str(config.resolve(config.tls_cert)), "ssl_keyfile": str(config.resolve(config.tls_key))}
    uv_config = uvicorn.Config(create_app(service), host=config.host, port=config.port, log_level=log_level,
                               access_log=False, timeout_graceful_shutdown=10,
                               **(server_limits(config) if limits else {}), **kwargs)
    uv_config.pipelines_limits = config  # read by limits.GuardedHttpToolsProtocol
    uv_config.load()
    if config.tls:
        # uvicorn builds its own context with no minimum version: replace it with the TLS 1.3 one.
        uv_config.ssl = tls_context(cert=kwargs["ssl_certfile"], key=kwargs["ssl_keyfile"])
    return uvicorn.Server(uv_config)
