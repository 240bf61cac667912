"""Bearer tokens scoped per domain: a token lists the domains it may call (``*`` = all).

Tokens come from a file (``serving.tokens_file``: ``<token> <domain>[,<domain>...]`` per line) and
from an environment variable (``serving.tokens_env``: ``token=domain,domain;token2=*``). A presented
token is compared with every known token through ``hmac.compare_digest`` (no early exit), so the
time taken says nothing about how much of a token was right. Tokens never appear in logs or reprs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import ConfigError

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class _Grant:
    digest: bytes  # sha256 of the token: equal-length inputs for compare_digest
    domains: frozenset[str]  # "*" = every domain


class TokenSet:
    """The accepted tokens and their domains."""

    def __init__(self, grants: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self._grants: list[_Grant] = []
        for token, domains in (grants or {}).items():
            self.add(token, domains)

    def add(self, token: str, domains: tuple[str, ...] | list[str]) -> None:
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"a serving token is shorter than {MIN_TOKEN_CHARS} characters: use a random one "
                              "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if not domains:
            raise ConfigError("a serving token lists no domain: name the domains it may call, or '*'")
        self._grants.append(_Grant(hashlib.sha256(token.encode()).digest(), frozenset(domains)))

    def __len__(self) -> int:
        return len(self._grants)

    def __repr__(self) -> str:
        return f"TokenSet({len(self)} tokens)"

    def domains_for(self, token: str) -> frozenset[str] | None:
        """The domains a token may call, or None for an unknown token."""
        presented = hashlib.sha256(token.encode()).digest()
        found: frozenset[str] | None = None
        for grant in self._grants:
            if hmac.compare_digest(presented, grant.digest) and found is None:
                found = grant.domains
        return found

    def allows(self, token: str, domain: str) -> bool | None:
        """True (allowed), False (known token, other domains) or None (unknown token)."""
        domains = self.domains_for(token)
        if domains is None:
            return None
        return "*" in domains or domain in domains


def _parse_domains(text: str, where: str) -> tuple[str, ...]:
    domains = tuple(d.strip() for d in text.split(",") if d.strip())
    if not domains:
        raise ConfigError(f"{where}: no domains after the token; use <token> <domain>[,<domain>...] or '*'")
    return domains


def load_tokens(*, tokens_file: str | Path = "", tokens_env: str = "", environ: Mapping[str, str] | None = None) -> TokenSet:
    """Read the tokens from the file and the environment variable.

    Raises:
        ConfigError: the file is missing or a line is malformed (named by file and line, never by token).
    """
    environ = os.environ if environ is None else environ
    tokens = TokenSet()
    if tokens_file:
        path = Path(tokens_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(f"serving.tokens_file: {path} does not exist") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise ConfigError(f"{path}:{number}: expected '<token> <domain>[,<domain>...]'")
            tokens.add(parts[0], _parse_domains(parts[1], f"{path}:{number}"))
    value = environ.get(tokens_env, "") if tokens_env else ""
    for n, entry in enumerate(e for e in value.split(";") if e.strip()):
        token, sep, domains = entry.partition("=")
        if not sep:
            raise ConfigError(f"${tokens_env} entry {n + 1}: expected token=domain,domain (entries split by ';')")
        tokens.add(token.strip(), _parse_domains(domains, f"${tokens_env} entry {n + 1}"))
    return tokens
