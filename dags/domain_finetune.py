"""domain_finetune: incremental DP fine-tune of each domain with new curated data, gated promotion."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag

from dags._training import list_domains, train_domain, training_params
from mlops_airflow import curated_assets, default_args, task_timeout

DOC = """
### Domain fine-tuning with differential privacy

Runs when any domain's curated data is published (Assets `curated_<domain>`, emitted by `weekly_ingest`),
or by hand with params. For every domain that has curated partitions no weekly fine-tune has read yet:

| task | what it does | where |
|---|---|---|
| `plan_finetune` | picks the new partitions, calibrates the noise (Opacus, PRV accountant) for the domain's per-run ε, and **refuses** the run if any partition it reads would go past the domain's budget; then reserves the spend in the privacy ledger (create-only entry) | CPU |
| `train_model` | Opacus DP-SGD from the current production model (or the base model), Poisson sampling, per-sample clipping; evaluates and checkpoints every epoch, resumes after a crash; pushes a content-addressed artifact (weights, tokenizer, manifest, model card, ε) | pool `gpu`, queue `gpu` |
| `approve_promotion` | for a domain in `artifacts.require_approval`: waits for a person's Approve/Reject in Airflow's Required actions (or the console's Approvals page), showing the gate's numbers and the model card; a rejection skips the promotion. Other domains pass at once | CPU (no slot while waiting) |
| `promote_model` | evaluation gate against production on the same held-out split (no drop > `max_drop`, 5% by default); promotes with a numbered create-only record, or alerts and leaves production untouched | CPU |

**Params** (Trigger DAG w/ config): `domain` (empty = every domain with new data), `epsilon` (per-run target ε; the budget
check still applies), `dry_run` (plan and budget check only: nothing is reserved or trained).

**On call**
- Inspect the budget: `python -m pipelines privacy budget --domain medical`; the ledger: `python -m pipelines privacy ledger --domain medical`.
- A refused run says which partition, the ε already spent, what this run would add and the budget.
- Roll back a model: `python -m pipelines model rollback --domain medical --why "..."`.
- A retry resumes from the last epoch checkpoint of the same run (same run id, same ledger entry: no double spend).

Versions: a weekly fine-tune is `<major>.<minor+1>` of its parent; see `monthly_full_retrain` for major versions.
"""


@dag(
    dag_id="domain_finetune",
    schedule=curated_assets(),
    start_date=dt.datetime(2026, 10, 4, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["training", "privacy", "weekly"],
    doc_md=DOC,
    params=training_params("weekly"),
    default_args=default_args(owner="ml-platform", execution_timeout=task_timeout("domain_finetune")),
)
def domain_finetune():
    # Every slot with curated partitions no weekly run has read, then per slot:
    # plan_finetune (budget check, reservation) -> train_model (GPU) -> approve_promotion (a person, where required) -> promote_model (gate).
    domains = list_domains(kind="weekly")
    train_domain(kind="weekly", plan_task_id="plan_finetune").expand(domain=domains)


domain_finetune()
