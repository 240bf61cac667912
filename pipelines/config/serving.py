"""The ``serving`` section: how the model server listens, batches, authenticates, screens and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.config.base import PROJECT_ROOT, ConfigError

INPUT_POLICIES = ("reject", "mask")
ENGINES = ("transformers", "vllm")
ENGINE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ServingConfig:
    """How the model server listens, batches, authenticates, screens and alerts.

    Attributes:
        host: interface to bind (loopback by default; put a proxy or TLS in front before widening it).
        port: TCP port.
        domains: domains to serve; empty = every configured domain.
        tokens_file: file of bearer tokens, one ``<token> <domain>[,<domain>...]`` (or ``*``) per line,
            ``#`` comments; relative paths are from the project root. Empty = none from a file.
        tokens_env: environment variable holding more tokens, ``token=domain,domain;token2=*``.
        max_batch_size: requests fused into one forward pass (1 = one request at a time).
        max_wait_ms: how long the first request of a batch waits for company.
        quantize_int8: load classification/LM weights as INT8 (dynamic quantization of Linear layers, CPU).
        num_threads: torch CPU threads for inference.
        poll_seconds: how often the production pointers are checked.
        cache_dir: where artifacts are downloaded (one folder per artifact id); empty = a temp folder.
        tls_cert: PEM certificate; with ``tls_key`` the server speaks TLS 1.3 or newer only.
        tls_key: PEM private key.
        p95_alert_ms: alert when the p95 latency over ``window_seconds`` exceeds this.
        window_seconds: the latency window.
        min_window_requests: fewer requests in the window than this never alert (one slow call is not a trend).
        max_input_chars: longest accepted input text (longer -> 413).
        max_body_bytes: largest accepted request body (larger -> 413).
        max_new_tokens: most tokens ``/generate`` produces (requests may ask for fewer).
        input_policy: ``reject`` (400) or ``mask`` inputs holding a sensitive-word lexicon entry.
        output_screen: name of the published labeller (``models/labellers/<name>``) that screens generated text;
            empty disables the screen (the service then logs a warning at start).
        output_screen_block: labels of that labeller that withhold an answer.
        output_screen_threshold: confidence at or above which a blocked label withholds the answer.
        feedback_ttl_seconds: how long a request's question and answer are kept for feedback.
        feedback_max_entries: most requests kept for feedback (least recently used go first).
        max_header_bytes: largest request head (request line + headers); larger -> 431 and the connection closes.
        header_timeout_seconds: a request head must arrive whole within this many seconds of its first byte
            (and a new connection must send one within this long); else 408 and the connection closes.
        body_timeout_seconds: the body must arrive whole within this many seconds of its head; else 408 + close.
        keepalive_seconds: an idle keep-alive connection is closed after this long.
        max_connections: open connections (and requests in flight) above this get 503 at once.
        store_timeout_seconds: connect and read timeout of each object-store call made while answering a request
            (feedback writes): a dead or frozen store fails the request with 503 within a few seconds.
        store_max_attempts: attempts per object-store call on the serving path (first try included).
        retry_after_seconds: the ``Retry-After`` a 503 for an unavailable store carries.
        engine: which continuous-batching engine generates causal-LM answers (pipelines.serving.engine):
            ``transformers`` (transformers' own continuous batching over a paged KV cache, in the serving process)
            or ``vllm`` (an OpenAI-compatible vLLM server, its own image; the promoted version's LoRA adapter is
            loaded there after verification). Classification domains are not affected.
        engine_url / engine_model: the vLLM server (``http://vllm:8000``) and its ``--served-model-name`` (vllm only).
        engine_timeout_seconds: how long one generation may take end to end.
        engine_cuda_graphs: replay the engine's decode step as a CUDA graph on a GPU (3.7x HF generate's
            requests/s on an H200 vs 1.9x without: benchmarks/README.md); ignored on CPU.
        engine_compile_level: torch.compile level of the transformers engine (0 off .. 3).
        engine_dtype: ``float32``, ``bfloat16`` or ``float16`` (transformers engine).
        engine_num_blocks / engine_page_size / engine_max_batch_tokens: the transformers engine's paged KV cache
            (blocks of ``engine_page_size`` tokens) and the most tokens one step schedules; null lets transformers
            size them from free GPU memory (the defaults are small CPU sizes: its heuristics allocate for a GPU).
    """

    host: str = "127.0.0.1"
    port: int = 8600
    domains: tuple[str, ...] = ()
    tokens_file: str = ""
    tokens_env: str = "PIPELINE_SERVING_TOKENS"
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    quantize_int8: bool = False
    num_threads: int = 1
    poll_seconds: float = 10.0
    cache_dir: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    p95_alert_ms: float = 500.0
    window_seconds: float = 300.0
    min_window_requests: int = 20
    max_input_chars: int = 4000
    max_body_bytes: int = 262144
    max_new_tokens: int = 64
    input_policy: str = "reject"
    output_screen: str = "output_screen"
    output_screen_block: tuple[str, ...] = ("unsafe",)
    output_screen_threshold: float = 0.5
    feedback_ttl_seconds: float = 86400.0
    feedback_max_entries: int = 10000
    max_header_bytes: int = 16384
    header_timeout_seconds: float = 5.0
    body_timeout_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    max_connections: int = 512
    store_timeout_seconds: float = 2.0
    store_max_attempts: int = 2
    retry_after_seconds: int = 5
    engine: str = "transformers"
    engine_url: str = ""
    engine_model: str = ""
    engine_timeout_seconds: float = 120.0
    engine_dtype: str = "float32"
    engine_num_blocks: int | None = 128
    engine_page_size: int = 16
    engine_max_batch_tokens: int | None = 512
    engine_cuda_graphs: bool = True
    engine_compile_level: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.domains, str):
            object.__setattr__(self, "domains", tuple(d for d in self.domains.split(",") if d))
        object.__setattr__(self, "domains", tuple(self.domains))
        if isinstance(self.output_screen_block, str):
            object.__setattr__(self, "output_screen_block", (self.output_screen_block,))
        object.__setattr__(self, "output_screen_block", tuple(self.output_screen_block))
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serving.port={self.port}: use 0..65535")
        positive = ("max_batch_size", "num_threads", "min_window_requests", "max_input_chars", "max_body_bytes",
                    "max_new_tokens", "feedback_max_entries", "max_header_bytes", "max_connections", "store_max_attempts",
                    "retry_after_seconds")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"serving.{name}={value!r} must be a positive integer")
        for name in ("max_wait_ms",):
            if getattr(self, name) < 0:
                raise ConfigError(f"serving.{name}={getattr(self, name)!r} must be >= 0")
        for name in ("poll_seconds", "p95_alert_ms", "window_seconds", "feedback_ttl_seconds", "header_timeout_seconds",
                     "body_timeout_seconds", "keepalive_seconds", "store_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"serving.{name}={getattr(self, name)!r} must be > 0")
        if not isinstance(self.quantize_int8, bool):
            raise ConfigError(f"serving.quantize_int8={self.quantize_int8!r}: use true or false")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("serving.tls_cert and serving.tls_key go together: set both (TLS) or neither")
        for name in ("tls_cert", "tls_key"):
            if getattr(self, name) and not self.resolve(getattr(self, name)).is_file():
                raise ConfigError(f"serving.{name}: {self.resolve(getattr(self, name))} does not exist")
        if self.max_header_bytes < 1024:
            raise ConfigError(f"serving.max_header_bytes={self.max_header_bytes}: use at least 1024 (a request head "
                              "with a bearer token needs a few hundred bytes)")
        if self.store_max_attempts > 5:
            raise ConfigError(f"serving.store_max_attempts={self.store_max_attempts}: use 1..5 (every attempt can "
                              "take store_timeout_seconds while a client waits)")
        if self.input_policy not in INPUT_POLICIES:
            raise ConfigError(f"serving.input_policy={self.input_policy!r}: use one of {INPUT_POLICIES}")
        if not 0.0 < self.output_screen_threshold <= 1.0:
            raise ConfigError(f"serving.output_screen_threshold={self.output_screen_threshold!r}: use (0, 1]")
        if self.max_body_bytes < self.max_input_chars:
            raise ConfigError(f"serving.max_body_bytes={self.max_body_bytes} is below max_input_chars="
                              f"{self.max_input_chars}: raise max_body_bytes")
        self._check_engine()

    def _check_engine(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"serving.engine={self.engine!r}: use one of {ENGINES}")
        if self.engine == "vllm" and not (self.engine_url.startswith(("http://", "https://")) and self.engine_model):
            raise ConfigError("serving.engine=vllm needs serving.engine_url (http://host:port of the vLLM server) and "
                              "serving.engine_model (its --served-model-name)")
        if not self.engine_timeout_seconds > 0:
            raise ConfigError(f"serving.engine_timeout_seconds={self.engine_timeout_seconds!r} must be > 0")
        if not isinstance(self.engine_cuda_graphs, bool):
            raise ConfigError(f"serving.engine_cuda_graphs={self.engine_cuda_graphs!r}: use true or false")
        if isinstance(self.engine_compile_level, bool) or self.engine_compile_level not in (0, 1, 2, 3):
            raise ConfigError(f"serving.engine_compile_level={self.engine_compile_level!r}: use 0 (off), 1, 2 or 3")
        if self.engine_dtype not in ENGINE_DTYPES:
            raise ConfigError(f"serving.engine_dtype={self.engine_dtype!r}: use one of {ENGINE_DTYPES}")
        for name in ("engine_num_blocks", "engine_page_size", "engine_max_batch_tokens"):
            value = getattr(self, name)
            if value is None and name != "engine_page_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"serving.{name}={value!r}: use a positive integer"
                                  + ("" if name == "engine_page_size" else ", or null for transformers' sizing"))

    @staticmethod
    def resolve(path: str) -> Path:
        """A configured path, relative paths taken from the project root."""
        p = Path(path)
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)
