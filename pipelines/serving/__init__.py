"""Model serving: a long-running HTTP service (not an Airflow task) over the production models.

It watches each domain's production pointer (``models/<domain>/promotions/``), verifies and hot-swaps
new artifacts (refusing corrupt ones while the old model keeps serving), batches concurrent requests,
optionally runs INT8 weights on CPU, authenticates per-domain bearer tokens, filters inputs with the
sensitive-word lexicon, screens generated answers with a trained classifier, records feedback into
``landing/feedback/`` for weekly_ingest, exports Prometheus metrics and alerts on p95 latency.

Start it with ``scripts/serve.sh`` or ``python -m pipelines serve run``; :func:`build_service` and
:func:`pipelines.serving.app.build_server` are the same thing as code. torch/transformers/fastapi
load only when a service is built, never on import of this package.
"""

from __future__ import annotations

from typing import Any

from pipelines.serving.config import ServingConfig, engine_config, override_serving, served_domains
from pipelines.serving.feedback import FeedbackError, feedback_record, write_feedback

__all__ = ["FeedbackError", "ServingConfig", "build_service", "engine_config", "feedback_record", "override_serving",
           "served_domains",
           "write_feedback"]

SCREEN_LANGUAGE = "zh"


def build_service(*, config: Any, store: Any, serving: ServingConfig | None = None,
                  environ: Any = None, output_screen: Any = "from_store") -> Any:
    """Build a ``ModelService`` from the pipeline config (not started: call ``.start()``); causal LMs generate on
    the engine ``serving.engine`` names (:func:`pipelines.serving.config.engine_config`).

    Args:
        config: the ``PipelineConfig``.
        store: the object store with the models (and ``models/labellers/<output_screen>``).
        serving: the serving config (``config.serving`` by default; ``override_serving`` applies command-line values).
        environ: where ``serving.tokens_env`` is read (``os.environ`` by default).
        output_screen: an ``OutputScreen``, None for none, or ``"from_store"``: the labeller published as
            ``serving.output_screen`` (none when that key is empty).

    Raises:
        ConfigError: bad settings, no token configured, or the output screen labeller is not published.
    """
    from pipelines.config import ConfigError
    from pipelines.governance import domain_rules, lexicon_for
    from pipelines.serving.auth import load_tokens
    from pipelines.serving.screening import InputFilter, OutputScreen
    from pipelines.serving.service import ModelService

    serving = serving or config.serving
    domains = served_domains(config, serving)
    tokens = load_tokens(tokens_file=serving.resolve(serving.tokens_file) if serving.tokens_file else "",
                         tokens_env=serving.tokens_env, environ=environ)
    if not len(tokens):
        raise ConfigError(f"no serving tokens: set serving.tokens_file or ${serving.tokens_env} "
                          "(token=domain,domain;token2=*)")
    rules = domain_rules(config, next(iter(domains)))
    lexicon = lexicon_for(rules.sensitive_lists)
    input_filter = InputFilter(lexicon, policy=serving.input_policy, clean=rules.clean)
    if output_screen == "from_store":
        output_screen = None
        if serving.output_screen and "causal_lm" in domains.values():
            from pipelines.label.registry import fetch_labeller

            labeller, _pointer = fetch_labeller(store, serving.output_screen)
            if labeller is None:
                raise ConfigError(f"output screen labeller {serving.output_screen!r} is not published: run "
                                  f"`python -m pipelines serve train-screen --publish` (or set serving.output_screen "
                                  "to '' to serve generated text unscreened)")
            output_screen = OutputScreen(labeller, block=serving.output_screen_block,
                                         threshold=serving.output_screen_threshold, name=serving.output_screen,
                                         lexicon_filter=InputFilter(lexicon, policy="mask"))
    return ModelService(config=serving, store=store, domains=domains, tokens=tokens, alerts=config.alerts,
                        input_filter=input_filter, output_screen=output_screen,
                        landing_prefix=config.storage.landing_prefix,
                        models_prefix=config.artifacts.prefix, engine=engine_config(serving))
