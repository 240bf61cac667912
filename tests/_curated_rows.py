"""Three curated rows (a file record, a feedback record, a Chinese record) shared by the serialisation and
commit-protocol tests."""

from __future__ import annotations

from pipelines.standardize import to_row

ROWS = [
    to_row({"id": "a1", "domain": "legal", "text": "The lease ends in May.", "label": "contract", "source": "files",
            "source_uri": "landing/legal/2024-06-03/a.jsonl#L1", "arrival_date": "2024-06-03", "created_at": None,
            "language": "en", "usage": "train"}),
    to_row({"id": "fb-r1", "domain": "legal", "text": "q\na", "label": None, "source": "feedback",
            "source_uri": "landing/feedback/2024-06-04/f.jsonl#L1", "arrival_date": "2024-06-04",
            "created_at": "2024-06-04T10:00:00Z", "language": "other", "usage": "review", "question": "q",
            "answer": "a", "rating": 2, "correction": "b", "model_version": "m1", "request_id": "r1"}),
    to_row({"id": "a3", "domain": "legal", "text": "合同已终止", "label": None, "source": "files",
            "source_uri": "landing/legal/2024-06-05/b.csv#L2", "arrival_date": "2024-06-05", "created_at": None,
            "language": "zh", "usage": "train"}),
]
