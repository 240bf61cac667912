"""Human review of auto-labelled records: pick what to review, queue it, take reviewers' labels back.

- :func:`select_for_review` (``sampling``): every low-confidence record plus a seeded random share.
- :func:`queue_partition` / :func:`write_queue` (``queue``): one queue file per partition version.
- :func:`export_queue` (``queue``) / :func:`import_reviews` (``reviews``): CSV or JSONL for reviewers;
  validated, create-only imports.
- :func:`apply_reviews` (``reviews``): reviewed labels win over predictions; share reviewed and agreement.

The file formats are documented in :mod:`pipelines.review.queue` and :mod:`pipelines.review.reviews`.
No torch, no Airflow.
"""

from pipelines.review.queue import (
    QUEUE_FIELDS,
    build_queue,
    export_queue,
    meta_key,
    parse_queue_key,
    queue_key,
    queue_partition,
    read_queue,
    write_queue,
)
from pipelines.review.reviews import (
    REVIEW_FIELDS,
    ReviewImport,
    ReviewImportError,
    ReviewStats,
    apply_reviews,
    import_review_rows,
    import_reviews,
    load_reviews,
)
from pipelines.review.sampling import ReviewConfig, review_quota, review_reasons, select_for_review

__all__ = [
    "QUEUE_FIELDS", "REVIEW_FIELDS", "ReviewConfig", "ReviewImport", "ReviewImportError", "ReviewStats",
    "apply_reviews", "build_queue", "export_queue", "import_review_rows", "import_reviews", "load_reviews", "meta_key",
    "parse_queue_key", "queue_key", "queue_partition", "read_queue", "review_quota", "review_reasons",
    "select_for_review", "write_queue",
]
