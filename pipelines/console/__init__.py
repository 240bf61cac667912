"""The operations console's logic: page data, actions, roles, cost calculator, approvals (no Airflow here).

The Airflow plugin (``plugins/mlops_console.py``) is thin: it authenticates the user through the auth manager,
maps their roles (:mod:`access`), and calls these modules with the console's own object store (the ``console``
S3 identity, pipelines/identities.py).

- :mod:`reads`: each page's data, read from the records the CLI reads (ledger, promotion records, quarantine,
  review queues);
- :mod:`actions`: review labels, rollback, quarantine release, approval audit entries; create-only and audited;
- :mod:`mask`: PII masking at render time (quarantined records can be raw);
- :mod:`cost`: the cloud-vs-local cost calculator; :mod:`approval`: what a promotion approval shows;
- :mod:`html`: the server-rendered pages.
"""

from pipelines.console.access import APPROVE, READ, REVIEW, ConsoleUser, console_user
from pipelines.console.cost import CostComparison, CostInputs, break_even_calls, compare_costs

__all__ = ["APPROVE", "READ", "REVIEW", "ConsoleUser", "CostComparison", "CostInputs", "break_even_calls",
           "compare_costs", "console_user"]
