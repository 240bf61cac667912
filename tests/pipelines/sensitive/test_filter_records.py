"""find_matches / mask_text / filter_records on tiny inline lexicons and records: exact spans, ids, reasons, text."""

from __future__ import annotations

import pytest

from pipelines.config import ConfigError
from pipelines.ingest.parse import Rejection
from pipelines.sensitive import Lexicon, Match, SensitiveConfig, filter_records, find_matches, mask_text

LEXICON = Lexicon.from_entries([
    ("杀猪盘", "fraud"), ("刷单", "fraud"), ("刷单返利", "fraud"), ("单返", "fraud"), ("返利网", "fraud"),
    ("百家乐", "gambling"), ("ponzi scheme", "fraud"), ("meth", "drugs"), ("vx9", "general"), ("(株)", "general"),
    ("fine", "general"),
])


@pytest.mark.parametrize(("text", "expected"), [
    ("他在做杀猪盘。", [(3, 6, "fraud")]),
    ("A PONZI Scheme, a Ponzi scheme", [(2, 14, "fraud"), (18, 30, "fraud")]),
    ("ＰＯＮＺＩ　ｓｃｈｅｍｅ！", [(0, 12, "fraud")]),                 # full-width, ideographic space
    ("the method is meth.", [(14, 18, "drugs")]),                     # whole words only for Latin edges
    ("Meth2 methamphetamine 2meth", []),
    ("请加VX9联系", [(2, 5, "general")]),                             # CJK neighbours are boundaries
    ("加ＶＸ９９", []),
    ("参与刷单返利网站", [(2, 6, "fraud")]),                          # leftmost-longest, no overlaps
    ("单返利网", [(0, 2, "fraud")]),                                  # leftmost wins over the longer 返利网
    ("刷单返利网", [(0, 4, "fraud")]),
    ("㈱公司百家乐", [(0, 1, "general"), (3, 6, "gambling")]),        # one char folded to three
    ("ﬁne print", [(0, 3, "general")]),                              # ligature: 3 characters fold to 'fine'
    ("没有敏感词 nothing here", []),
    ("", []),
])
def test_find_matches(text, expected):
    assert find_matches(text, lexicon=LEXICON) == tuple(Match(*m) for m in expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("他在做杀猪盘。", "他在做***。"),
    ("ＰＯＮＺＩ　ｓｃｈｅｍｅ！ Ponzi scheme", "************！ ************"),
    ("参与刷单返利网站", "参与****网站"),
    ("㈱公司 ﬁne", "*公司 ***"),
    ("the method", "the method"),
])
def test_mask_text(text, expected):
    assert mask_text(text, lexicon=LEXICON) == expected
    assert len(mask_text(text, lexicon=LEXICON)) == len(text)


def row(id_: str, domain: str, text: str, **fields) -> dict:
    return {"id": id_, "domain": domain, "text": text, "source_uri": f"landing/{domain}/d/f.jsonl#L{id_}", **fields}


ROWS = [
    row("1", "legal", "合同条款正常"),
    row("2", "legal", "Ponzi scheme 与 百家乐, 还有 百家乐"),
    row("3", "finance", "参与刷单返利网站", question="是不是杀猪盘？", answer=None, correction="ok"),
    row("4", "medical", "the meth clinic"),
    row("5", "reviews", "fine product", rating=5),
    row("6", "finance", "fine", question=3),
]
POLICY = SensitiveConfig(default="flag", domains={"legal": "drop", "finance": "mask"})


def test_filter_records_policies():
    result = filter_records(ROWS, lexicon=LEXICON, policy=POLICY)
    assert [r["id"] for r in result.rows] == ["1", "3", "4", "5", "6"]
    assert result.rows[0] is ROWS[0]                       # untouched rows are passed through
    assert result.rows[1] == {**ROWS[2], "text": "参与****网站", "question": "是不是***？"}
    assert ROWS[2]["text"] == "参与刷单返利网站"              # input not mutated
    assert result.rows[2] is ROWS[3] and result.rows[3] is ROWS[4]
    assert result.rows[4] == {**ROWS[5], "text": "****"}
    assert result.rejections == (Rejection("landing/legal/d/f.jsonl#L2", "sensitive", "sensitive.drop.gambling",
                                           "fraud=1, gambling=2 in text", None),)
    assert result.flagged == {"4": ("drugs",), "5": ("general",)}
    assert tuple(result.flagged) == ("4", "5")  # in input order
    assert result.counts == {"in": 6, "kept": 5, "matched": 5, "dropped": 1, "masked": 2, "flagged": 2}
    assert result.categories == {"drugs": 1, "fraud": 3, "gambling": 2, "general": 2}


def test_drop_reason_tie_goes_to_first_category_and_detail_lists_fields():
    rows = [row("7", "legal", "meth", answer="杀猪盘")]
    result = filter_records(rows, lexicon=LEXICON, policy=SensitiveConfig(default="drop"))
    (rejection,) = result.rejections
    assert (rejection.reason, rejection.detail, rejection.raw) == ("sensitive.drop.drugs", "drugs=1, fraud=1 in text, answer",
                                                                   None)
    assert "meth" not in repr(rejection) and "杀猪盘" not in repr(rejection)
    assert result.rows == () and result.counts["dropped"] == 1


def test_empty_lexicon_keeps_everything():
    result = filter_records(ROWS, lexicon=Lexicon.from_entries([]), policy=SensitiveConfig(default="drop"))
    assert result.rows == tuple(ROWS)
    assert result.rejections == () and result.flagged == {} and result.categories == {}
    assert result.counts == {"in": 6, "kept": 6, "matched": 0, "dropped": 0, "masked": 0, "flagged": 0}


def test_policy_for():
    assert POLICY.policy_for("legal") == "drop"
    assert POLICY.policy_for("unknown") == "flag"
    assert POLICY.policy_for(None) == "flag"
    assert POLICY.domains == (("finance", "mask"), ("legal", "drop"))
    assert SensitiveConfig(domains=(("legal", "drop"),)) == SensitiveConfig(domains={"legal": "drop"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"default": "delete"}, r"sensitive.default='delete': use one of \['drop', 'mask', 'flag'\]"),
    ({"domains": {"legal": "hide"}}, r"sensitive.domains.legal='hide'"),
    ({"domains": (("legal", "drop"), ("legal", "flag"))}, "'legal' is listed twice"),
    ({"domains": (("legal",),)}, r"is not a \(domain, policy\) pair"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SensitiveConfig(**kwargs)


def test_from_mapping():
    assert SensitiveConfig.from_mapping({"default": "mask", "domains": {"legal": "flag"}}) == \
        SensitiveConfig(default="mask", domains={"legal": "flag"})
    assert SensitiveConfig.from_mapping(None) == SensitiveConfig()
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['policy'\]"):
        SensitiveConfig.from_mapping({"policy": "drop"})
