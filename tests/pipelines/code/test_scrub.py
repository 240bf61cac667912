"""Scrubbing: one real-shaped fake of each secret and PII kind is replaced by its typed placeholder."""

from __future__ import annotations

import pytest
from code_fakes import planted, secret_file

from pipelines.code.scrub import PLACEHOLDER, ScrubConfig, scrub_text, shannon_entropy

EXPECTED = {
    "aws_key": "SECRET_AWS_KEY", "aws_secret": "SECRET_PASSWORD", "github_token": "SECRET_GITHUB_TOKEN",
    "slack_token": "SECRET_SLACK_TOKEN", "stripe_key": "SECRET_STRIPE_KEY", "jwt": "SECRET_JWT",
    "private_key": "SECRET_PRIVATE_KEY", "db_password": "SECRET_PASSWORD",
    "connection_string": "SECRET_CONNECTION_STRING", "email": "EMAIL", "author": "NAME", "hostname": "HOSTNAME",
    "ip": "IP",
}


def test_every_planted_kind_is_replaced_by_its_typed_placeholder() -> None:
    values = planted()
    out = scrub_text(secret_file(values))
    assert out.problem is None
    assert [k for k, v in values.items() if v in out.text] == []
    assert dict(out.counts) == {"SECRET_AWS_KEY": 1, "SECRET_PASSWORD": 2, "SECRET_GITHUB_TOKEN": 1,
                                "SECRET_SLACK_TOKEN": 1, "SECRET_STRIPE_KEY": 1, "SECRET_JWT": 1,
                                "SECRET_PRIVATE_KEY": 1, "SECRET_CONNECTION_STRING": 1, "NAME": 1, "EMAIL": 1,
                                "HOSTNAME": 1, "IP": 1}
    assert 'AWS_ACCESS_KEY_ID = "<SECRET_AWS_KEY_1>"' in out.text
    assert 'DB_PASSWORD = "<SECRET_PASSWORD_2>"' in out.text
    assert 'SIGNING_KEY = """<SECRET_PRIVATE_KEY_1>"""' in out.text
    assert "Author: <NAME_1> <<EMAIL_1>>" in out.text
    # The code around the secrets is untouched and still parses.
    assert "def connect(url: str = DATABASE_URL) -> str:" in out.text
    compile(out.text, "app.py", "exec")


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_kind_alone(kind: str) -> None:
    value = planted(seed=11)[kind]
    name = {"author": "__author__", "email": "contact", "hostname": "host", "ip": "addr",
            "db_password": "db_password"}.get(kind, "value")
    text = f'{name} = """{value}"""\n' if kind == "private_key" else f'{name} = "{value}"\n'
    if kind == "aws_secret":
        text = f'aws_secret_access_key = "{value}"\n'
    out = scrub_text(text)
    assert value not in out.text and out.problem is None
    assert f"<{EXPECTED[kind]}_1>" in out.text


def test_same_value_same_placeholder_within_a_file() -> None:
    token = planted()["github_token"]
    other = planted(seed=99)["github_token"]
    out = scrub_text(f'A = "{token}"\nB = "{token}"\nC = "{other}"\n')
    assert out.text == 'A = "<SECRET_GITHUB_TOKEN_1>"\nB = "<SECRET_GITHUB_TOKEN_1>"\nC = "<SECRET_GITHUB_TOKEN_2>"\n'


def test_a_private_key_without_its_end_cannot_be_removed_safely() -> None:
    text = 'KEY = """-----BEGIN EC ' + 'PRIVATE KEY-----\nMHcCAQEEIB' + "x" * 40 + '\n"""\n'
    assert scrub_text(text).problem == "a private key block without its END line"


def test_references_and_ordinary_code_are_left_alone() -> None:
    text = ('password = os.environ["DB_PASSWORD"]\ntoken = "${API_TOKEN}"\nsecret = "<redacted>"\n'
            'name = "pipelines.weekly.steps.find_duplicates"\nurl = "https://example.com/a/b"\n'
            'version = "1.2.3.4"\nhost = "pypi.org"\n')
    out = scrub_text(text)
    assert out.text == text and out.problem is None and not out.counts


def test_internal_domains_are_configurable_and_private_ips_replaced() -> None:
    text = 'A = "db.acme.example"\nB = "192.168.1.20"\nC = "8.8.8.8"\n'
    out = scrub_text(text, config=ScrubConfig(internal_domains=("acme.example",)))
    assert out.text == 'A = "<HOSTNAME_1>"\nB = "<IP_1>"\nC = "8.8.8.8"\n'


def test_high_entropy_strings_need_mixed_classes() -> None:
    key = planted()["aws_secret"].replace("/", "A").replace("+", "b")
    out = scrub_text(f'cfg = {{"k": "{key}"}}\n')
    assert out.text == 'cfg = {"k": "<SECRET_HIGH_ENTROPY_1>"}\n'
    assert shannon_entropy("aaaa") == 0.0
    assert PLACEHOLDER.fullmatch("<SECRET_AWS_KEY_12>")
