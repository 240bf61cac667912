"""Detectors on realistic positive and negative examples: exact masked strings."""

from __future__ import annotations

import pytest

from pipelines.pii import Hit, PiiMapping, find_pii, is_card_number, is_resident_id, luhn_ok, mask_text


def masked(text: str) -> str:
    return mask_text(text, mapping=PiiMapping())


def unchanged(text: str) -> None:
    assert masked(text) == text


# --- e-mail -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Write to Zhang.San@Example.COM today.", "Write to [EMAIL_1] today."),
    ("邮箱：li_si+shop@mail.163.com。", "邮箱：[EMAIL_1]。"),
    ("a@x.io and A@X.IO are one, b@x.io another", "[EMAIL_1] and [EMAIL_1] are one, [EMAIL_2] another"),
    ("QQ邮箱13800138000@qq.com", "QQ邮箱[EMAIL_1]"),  # one e-mail, not a phone inside it
    ("<mailto:ops-team@corp.example.org>", "<mailto:[EMAIL_1]>"),
])
def test_emails(text, expected):
    assert masked(text) == expected


@pytest.mark.parametrize("text", ["follow @zhangsan on weibo", "root@localhost", "x@y.c", "a @ b.com", "@@"])
def test_not_emails(text):
    unchanged(text)


# --- phones -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("手机13800138000，谢谢", "手机[PHONE_1]，谢谢"),
    ("13800138000 / 138 0013 8000 / 138-0013-8000 / +86 138 0013 8000 / +8613800138000 / 0086 13800138000",
     "[PHONE_1] / [PHONE_1] / [PHONE_1] / [PHONE_1] / [PHONE_1] / [PHONE_1]"),
    ("tel:19912345678.", "tel:[PHONE_1]."),
    ("电话13800138000,13900139000;13700137000", "电话[PHONE_1],[PHONE_2];[PHONE_3]"),
    ("座机010-12345678，深圳(0755)1234-5678或0755-12345678转分机0755-12345678-123",
     "座机[PHONE_1]，深圳[PHONE_2]或[PHONE_2]转分机[PHONE_3]"),
    ("广州 020 8765 4321", "广州 [PHONE_1]"),
    ("London +44 20 7946 0958 or +44 (0)20 7946 0958; Paris +33 1 42 68 53 00",
     "London [PHONE_1] or [PHONE_1]; Paris [PHONE_2]"),
    ("Call (415) 555-2671, 415-555-2671, 415.555.2671 or +1 (415) 555-2671; toll-free 1-800-555-0199.",
     "Call [PHONE_1], [PHONE_1], [PHONE_1] or [PHONE_1]; toll-free [PHONE_2]."),
])
def test_phones(text, expected):
    assert masked(text) == expected


@pytest.mark.parametrize("text", [
    "12800138000",                        # no mobile prefix 12x
    "13800138000123",                      # inside a longer run of digits
    "SKU13800138000",                      # glued to letters: a product code
    "011-12345678",                        # 01x area codes other than 010 do not exist
    "0755-0123456",                        # local numbers do not start with 0
    "2024-12345678",                       # not an area code
    "(123) 456-7890 and 415-055-2671",     # NANP area/exchange codes start with 2-9
    "score +5, growth +12.5%, +1234567",   # too few digits for a phone
    "2024-06-03 10:30:00",
    "room 1380 0138",
])
def test_not_phones(text):
    unchanged(text)


# --- resident identity numbers ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("身份证号11010519491231002X。", "身份证号[ID_1]。"),
    ("ID 11010519491231002x and 11010519491231002X", "ID [ID_1] and [ID_1]"),
    ("32031119900101123X,11010519491231002X", "[ID_1],[ID_2]"),
])
def test_resident_ids(text, expected):
    assert masked(text) == expected


@pytest.mark.parametrize("text", [
    "订单号110105194912310021",              # checksum fails: an order number
    "110105194902300020",                   # valid checksum, 30 February
    "110105185001010021",                   # valid checksum, born 1850
    "010105194912310026",                   # valid checksum, region cannot start with 0
    "11010519491231002X1",                  # inside a longer run
])
def test_not_resident_ids(text):
    unchanged(text)


# --- card numbers -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Visa 4111 1111 1111 1111, 4111-1111-1111-1111 or 4111111111111111.",
     "Visa [CARD_1], [CARD_1] or [CARD_1]."),
    ("卡号6222021234567890128，Amex 3782 822463 10005", "卡号[CARD_1]，Amex [CARD_2]"),
    ("MC 2221 0000 0000 0009 and 5555555555554444", "MC [CARD_1] and [CARD_2]"),
])
def test_cards(text, expected):
    assert masked(text) == expected


@pytest.mark.parametrize("text", [
    "4111111111111112",                      # Luhn fails
    "4111 1111 1111 1112",
    "order 41111111111111111111",            # a 20-digit run
    "ref A4111111111111111",                 # glued to a letter
    "1234567812345670",                      # Luhn holds, but no card network starts with 1
    "ISBN 978-7-111-54742-6 / 9787111547426",
    "ts 20240115123045, 2019 2020 2021 2022",
])
def test_not_cards(text):
    unchanged(text)


# --- addresses --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("收货地址：北京市朝阳区建国路88号院3号楼2单元501室，谢谢", "收货地址：[ADDR_1]，谢谢"),
    ("我住在上海市浦东新区世纪大道100号。", "我住在[ADDR_1]。"),
    ("公司杭州市西湖区文三路90号", "公司[ADDR_1]"),           # starts at the city
    ("寄到广东省深圳市南山区科苑路15号A座", "寄到[ADDR_1]"),    # 到 ends the walk back
    ("地址建国门外大街1号", "地址[ADDR_1]"),                   # road name only
    ("上海长乐路123弄4号", "[ADDR_1]"),
    ("Ship to 221B Baker Street today", "Ship to [ADDR_1] today"),
    ("1600 Pennsylvania Ave NW, Washington, DC 20500.", "[ADDR_1]."),
    ("Office: 350 5th Avenue, Suite 3000 (NYC)", "Office: [ADDR_1] (NYC)"),
    ("10 Downing St. and 10 downing street", "[ADDR_1] and 10 downing street"),
])
def test_addresses(text, expected):
    assert masked(text) == expected


@pytest.mark.parametrize("text", [
    "地铁10号线换乘", "今天是5月3号", "第3号选手", "编号123号", "路88号",
    "I have 3 apples on the table", "In 2019 Apple launched", "Chapter 5 Street Fighter",
])
def test_not_addresses(text):
    unchanged(text)


# --- numbers that are not personal data -------------------------------------------------------

def test_amounts_dates_versions_are_left_alone():
    unchanged("Total 1,234,567.89 yuan on 2024-01-15 at 10:30, version 10.0.19041.1, v2.3.4, "
              "pi 3.14159265358979, IP 192.168.1.100, ￥12,800.00, 3.0.13800138000")


def test_full_width_digits_and_parentheses():
    assert masked("电话：１３８００１３８０００，或13800138000，＋８６ １３８ ００１３ ８０００") == \
        "电话：[PHONE_1]，或[PHONE_1]，[PHONE_1]"
    assert masked("座机（0755）1234-5678，即(0755)1234-5678；邮箱ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ") == \
        "座机[PHONE_1]，即[PHONE_1]；邮箱[EMAIL_1]"


def test_find_pii_returns_ordered_non_overlapping_hits():
    text = "王先生 13800138000, wang@example.com, 卡 4111111111111111, 北京市朝阳区建国路88号"
    hits = find_pii(text)
    assert [(text[h.start:h.end], h.kind, h.key) for h in hits] == [
        ("13800138000", "phone", "+8613800138000"),
        ("wang@example.com", "email", "wang@example.com"),
        ("4111111111111111", "card", "4111111111111111"),
        ("北京市朝阳区建国路88号", "address", "北京市朝阳区建国路88号"),
    ]
    assert [(text[h.start:h.end], h.kind) for h in find_pii(text, kinds=("card", "email"))] == [
        ("wang@example.com", "email"), ("4111111111111111", "card")]
    assert repr(hits[0]) == "Hit(4, 15, 'phone')"  # never the value
    assert hits[0] == Hit(4, 15, "phone", "+8613800138000")


# --- validators -------------------------------------------------------------------------------

def test_validators():
    assert is_resident_id("11010519491231002X") and is_resident_id("11010519491231002x")
    assert not is_resident_id("110105194912310021")
    assert not is_resident_id("1101051949123100")
    assert not is_resident_id("１１0105194912310021")
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and not luhn_ok("4111111111111112")
    assert is_card_number("6222021234567890128")
    assert not is_card_number("9787111547426")         # ISBN-13 passes no network prefix
    assert not is_card_number("411111111111")           # 12 digits
    assert not is_card_number("2019012020212023")       # Luhn holds, 2019 is no Mastercard range
