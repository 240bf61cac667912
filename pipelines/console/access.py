"""Who may do what in the operations console: the auth manager's roles mapped to three permissions.

The console trusts the Airflow auth manager for who the user is (its JWT) and maps the user's roles, as the auth
manager names them, onto what the console allows. ``SimpleAuthManager`` gives one role per user (``viewer``,
``user``, ``op``, ``admin``); FAB gives role names such as ``Viewer``, ``Op``, ``ModelApprover``
(deploy/airflow-roles.json). Names compare case-insensitively; an unknown role reads only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

READ, REVIEW, APPROVE = "read", "review", "approve"
# Reviewers label review queues and release quarantined records; approvers also approve promotions and roll back.
REVIEWER_ROLES = frozenset({"op", "user", "reviewer", "dataengineer"})
APPROVER_ROLES = frozenset({"admin", "modelapprover"})


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in user as the console sees them.

    Attributes:
        name: the auth manager's user name (recorded as ``console:<name>`` in what the console writes).
        roles: the auth manager's role names.
    """

    name: str
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a console user needs a name (the auth manager's user name)")
        object.__setattr__(self, "roles", tuple(r for r in self.roles if r))

    @property
    def permissions(self) -> frozenset[str]:
        """``read`` for everyone signed in; ``review`` for reviewer and approver roles; ``approve`` for approvers."""
        names = {r.lower().replace(" ", "").replace("_", "") for r in self.roles}
        out = {READ}
        if names & (REVIEWER_ROLES | APPROVER_ROLES):
            out.add(REVIEW)
        if names & APPROVER_ROLES:
            out.add(APPROVE)
        return frozenset(out)

    def can(self, permission: str) -> bool:
        if permission not in (READ, REVIEW, APPROVE):
            raise ValueError(f"permission={permission!r}: use one of read, review, approve")
        return permission in self.permissions

    def require(self, permission: str, *, action: str) -> None:
        """Raise PermissionError unless the user has ``permission`` (the message says which roles do)."""
        if not self.can(permission):
            roles = sorted(APPROVER_ROLES if permission == APPROVE else REVIEWER_ROLES | APPROVER_ROLES)
            raise PermissionError(f"{self.name!r} (roles {list(self.roles)}) may not {action}: it needs the "
                                  f"{permission} permission, given by the role(s) {roles}")

    @property
    def actor(self) -> str:
        """How the user is recorded in promotion records, reviews and audit entries."""
        return f"console:{self.name}"


def console_user(name: str, roles: Iterable[str] | str | None) -> ConsoleUser:
    """A :class:`ConsoleUser` from an auth manager's user name and role(s) (one name or several)."""
    if roles is None:
        roles = ()
    elif isinstance(roles, str):
        roles = (roles,)
    return ConsoleUser(name=name, roles=tuple(str(r) for r in roles))
