"""Roles of the auth manager -> console permissions; masking at render time."""

from __future__ import annotations

import pytest

from pipelines.console.access import APPROVE, READ, REVIEW, console_user
from pipelines.console.mask import mask_for_display


@pytest.mark.parametrize("roles, expected", [
    ("viewer", {READ}), ("VIEWER", {READ}), (None, {READ}), (["Viewer", "Public"], {READ}),
    ("op", {READ, REVIEW}), ("user", {READ, REVIEW}), (["Reviewer"], {READ, REVIEW}),
    ("admin", {READ, REVIEW, APPROVE}), (["Viewer", "ModelApprover"], {READ, REVIEW, APPROVE}),
])
def test_permissions_by_role(roles, expected):
    assert console_user("ann", roles).permissions == expected


def test_require_names_the_roles_that_would_do_and_actor_is_recorded_with_the_console_prefix():
    viewer = console_user("vic", "viewer")
    with pytest.raises(PermissionError, match=r"'vic' \(roles \['viewer'\]\) may not roll back: .* \['admin', 'modelapprover'\]"):
        viewer.require(APPROVE, action="roll back")
    console_user("ann", "admin").require(APPROVE, action="roll back")
    assert console_user("ann", "admin").actor == "console:ann"
    with pytest.raises(ValueError, match="needs a name"):
        console_user("", "admin")


def test_masking_replaces_phone_and_email_consistently_and_cuts_after_masking():
    from pipelines.pii import PiiMapping

    mapping = PiiMapping()
    first = mask_for_display("call 13812345678 or li.wei@example.com", mapping=mapping)
    second = mask_for_display("again 13812345678", mapping=mapping)
    assert first == "call [PHONE_1] or [EMAIL_1]" and second == "again [PHONE_1]"
    assert mask_for_display("x" * 10 + " 13812345678", limit=12) == "x" * 10 + " […"
    assert mask_for_display(None) is None
