"""mask_records / mask_text: consistent tokens over a partition, determinism, counts, config."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.config import ConfigError
from pipelines.pii import KINDS, MaskResult, PiiConfig, PiiMapping, mask_records, mask_text


def row(n: int, text: str, **extra) -> dict:
    return {"id": f"r{n}", "domain": "customer_service", "text": text, "language": "zh", **extra}


def texts(result: MaskResult) -> list[str]:
    return [r["text"] for r in result.rows]


def test_same_value_same_token_across_records_numbered_by_first_appearance():
    rows = [
        row(1, "请回电13800138000"),
        row(2, "没有个人信息"),
        row(3, "换成13900139000，原号码138-0013-8000停用；邮箱a@b.com"),
        row(4, "a@b.com 与 13900139000"),
    ]
    result = mask_records(rows)
    assert texts(result) == ["请回电[PHONE_1]", "没有个人信息", "换成[PHONE_2]，原号码[PHONE_1]停用；邮箱[EMAIL_1]",
                             "[EMAIL_1] 与 [PHONE_2]"]
    assert result.counts == {"email": 2, "phone": 4, "id": 0, "card": 0, "address": 0}
    assert result.distinct == {"email": 1, "phone": 2, "id": 0, "card": 0, "address": 0}
    assert result.pii_found == 3


def test_output_is_deterministic_and_numbering_follows_record_order():
    rows = [row(1, "卡4111111111111111"), row(2, "卡5555555555554444 和 4111 1111 1111 1111")]
    first, again = mask_records(rows), mask_records(rows)
    assert first == again
    assert texts(first) == ["卡[CARD_1]", "卡[CARD_2] 和 [CARD_1]"]
    assert texts(mask_records(rows[::-1])) == ["卡[CARD_1] 和 [CARD_2]", "卡[CARD_2]"]


def test_all_text_fields_are_masked_with_one_mapping_and_other_fields_kept():
    feedback = row(1, "我的电话13800138000\n已记录：[redacted]", question="我的电话13800138000",
                   answer="已记录", correction="请寄到北京市朝阳区建国路88号，电话13800138000",
                   rating=2, request_id="13800138000", model_version="m1")
    rows = [feedback, row(2, "nothing here", question=None, answer=None, correction=None)]
    original = json.loads(json.dumps(rows))
    result = mask_records(rows)
    assert result.rows[0] == {**feedback, "text": "我的电话[PHONE_1]\n已记录：[redacted]", "question": "我的电话[PHONE_1]",
                              "correction": "请寄到[ADDR_1]，电话[PHONE_1]"}
    assert result.rows[0]["request_id"] == "13800138000"  # only the text fields are masked
    assert result.rows[1] == rows[1]
    assert rows == original  # inputs untouched
    assert result.counts == {"email": 0, "phone": 3, "id": 0, "card": 0, "address": 1}
    assert result.pii_found == 1


def test_only_enabled_kinds_are_masked_and_counted():
    rows = [row(1, "a@b.com 13800138000 11010519491231002X")]
    result = mask_records(rows, config=PiiConfig(kinds=("id", "email")))
    assert texts(result) == ["[EMAIL_1] 13800138000 [ID_1]"]
    assert result.counts == {"email": 1, "id": 1}
    assert result.pii_found == 1
    # A disabled kind does not claim its text for another kind: the 18-digit ID is no phone.
    assert texts(mask_records(rows, config=PiiConfig(kinds=("phone",)))) == ["a@b.com [PHONE_1] 11010519491231002X"]


def test_mask_text_shares_numbering_through_the_mapping():
    mapping = PiiMapping()
    assert mask_text("a 13800138000", mapping=mapping) == "a [PHONE_1]"
    assert mask_text("b 13900139000 c 13800138000", mapping=mapping) == "b [PHONE_2] c [PHONE_1]"
    assert mask_text("no pii", mapping=mapping) == "no pii"
    assert mapping.counts == {"email": 0, "phone": 3, "id": 0, "card": 0, "address": 0}
    assert mapping.masked == 3
    assert mapping.distinct == {"email": 0, "phone": 2, "id": 0, "card": 0, "address": 0}
    assert len(mapping) == 2
    assert mask_text("a@b.com 13800138000", mapping=PiiMapping(), config=PiiConfig(kinds=("email",))) == \
        "[EMAIL_1] 13800138000"


def test_masking_is_idempotent_and_the_mapping_never_shows_values():
    mapping = PiiMapping()
    once = mask_text("王 13800138000 wang@example.com 11010519491231002X 4111111111111111 北京市朝阳区建国路88号",
                     mapping=mapping)
    assert once == "王 [PHONE_1] [EMAIL_1] [ID_1] [CARD_1] [ADDR_1]"
    assert mask_text(once, mapping=PiiMapping()) == once
    shown = repr(mapping)
    assert shown == ("PiiMapping(distinct={'email': 1, 'phone': 1, 'id': 1, 'card': 1, 'address': 1}, "
                     "counts={'email': 1, 'phone': 1, 'id': 1, 'card': 1, 'address': 1})")
    for value in ("13800138000", "wang", "1101", "4111", "建国路"):
        assert value not in shown


def test_many_records_keep_numbering_dense():
    rows = [row(i, f"客户{i} 电话138{i:08d}，备用13800138000") for i in range(2000)]
    result = mask_records(rows)
    assert result.rows[0]["text"] == "客户0 电话[PHONE_1]，备用[PHONE_2]"
    assert result.rows[1]["text"] == "客户1 电话[PHONE_3]，备用[PHONE_2]"
    assert result.rows[1999]["text"] == "客户1999 电话[PHONE_2001]，备用[PHONE_2]"
    assert result.counts["phone"] == 4000
    assert result.distinct["phone"] == 2001  # 138 0000 0000 .. 138 0000 1999, and 138 0013 8000
    assert result.pii_found == 2000


def test_empty_partition():
    result = mask_records([])
    assert result == MaskResult(rows=(), counts=dict.fromkeys(KINDS, 0), distinct=dict.fromkeys(KINDS, 0),
                                pii_found=0)


def test_config_defaults_validation_and_mapping():
    assert PiiConfig().kinds == ("email", "phone", "id", "card", "address")
    assert PiiConfig(kinds=("card", "email")) == PiiConfig(kinds=["email", "card"])
    assert PiiConfig.from_mapping({"kinds": ["phone"]}) == PiiConfig(kinds=("phone",))
    assert PiiConfig.from_mapping(None) == PiiConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        PiiConfig().kinds = ()
    with pytest.raises(ConfigError) as info:
        PiiConfig(kinds=("phone", "passport"))
    assert str(info.value) == ("pii.kinds: unknown ['passport']; "
                               "use a subset of ['email', 'phone', 'id', 'card', 'address']")
    with pytest.raises(ConfigError) as info:
        PiiConfig(kinds=())
    assert str(info.value) == ("pii.kinds is empty: list the kinds to mask from "
                               "['email', 'phone', 'id', 'card', 'address'] (leave the key out to mask all)")
    with pytest.raises(ConfigError) as info:
        PiiConfig.from_mapping({"kind": ["phone"]})
    assert str(info.value) == "pii: unknown key(s) ['kind']; known: ['kinds']"
