"""A partner admin invites, deactivates and reactivates the partner's users."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import Conflict, NotFound
from app.models import AuditEvent, OutboxMessage, Role, User
from app.services.auth import InvalidCredentials, authenticate
from app.services.invitations import (
    INVITE_VALID_FOR,
    InvitationUnusable,
    LinkSettings,
    PasswordInvalid,
    accept_invitation,
    invitation_for,
    is_pending,
)
from app.services.partner_users import (
    InviteInput,
    InviteInvalid,
    NotAllowed,
    invite_user,
    list_users,
    resend_invitation,
    set_user_active,
)
from tests.services.account_helpers import DE_ADMIN, JORDAN, US_ADMIN, US_SALES, user

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
LINKS = LinkSettings(secret_key="test-secret-key-not-for-production", base_url="http://portal")
PASSWORD = "correct horse battery"
NEW = InviteInput(
    name="  Robin   Park ", email=" Robin@US-Partner.example ", role=Role.PARTNER_SALES
)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with demo.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


def _token(db: Session, email: str) -> str:
    """The token in the latest invitation email to ``email`` (as the invitee reads it)."""
    message = db.exec(
        select(OutboxMessage)
        .where(OutboxMessage.to_address == email, OutboxMessage.kind == "invite")
        .order_by(OutboxMessage.id.desc())  # type: ignore[union-attr]
    ).first()
    assert message is not None
    match = re.search(r"http://portal/invite/(\S+)", message.text_body)
    assert match, message.text_body
    assert f'href="http://portal/invite/{match.group(1)}"' in message.html_body
    return match.group(1)


def _invite(db: Session, form: InviteInput = NEW, *, now: datetime = NOW) -> User:
    return invite_user(db, user(db, US_ADMIN), form, links=LINKS, now=now).user


# -- inviting ------------------------------------------------------------------------------


def test_does_an_invite_create_a_user_who_cannot_sign_in_yet(db: Session) -> None:
    invitation = invite_user(db, user(db, US_ADMIN), NEW, links=LINKS, now=NOW)

    invited = invitation.user
    assert (invited.name, invited.email, invited.role) == (
        "Robin Park",
        "robin@us-partner.example",
        Role.PARTNER_SALES,
    )
    assert invited.partner_id == user(db, US_ADMIN).partner_id
    assert is_pending(invited)
    message = db.get(OutboxMessage, invitation.email_id)
    assert message is not None and message.to_address == invited.email
    assert "US" in message.subject or "invited" in message.subject.lower()
    with pytest.raises(InvalidCredentials):
        authenticate(db, email=invited.email, password="", now=NOW)
    audit = db.exec(select(AuditEvent).where(AuditEvent.action == "user.invited")).one()
    assert audit.subject_id == invited.id and audit.detail["role"] == Role.PARTNER_SALES


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        (InviteInput(name=" ", email="a@b.example"), "name", "Enter the person's name."),
        (InviteInput(name="x" * 201, email="a@b.example"), "name", "at most 200"),
        (InviteInput(name="Robin", email=""), "email", "Enter the person's email"),
        (InviteInput(name="Robin", email="robin@"), "email", "valid email"),
        (InviteInput(name="Robin", email="a@b.example", role="operator"), "role", "Sales or Admin"),
        (InviteInput(name="Robin", email="a@b.example", role="customer"), "role", "Sales or Admin"),
    ],
)
def test_does_the_invite_form_name_the_field_at_fault(
    db: Session, form: InviteInput, field: str, message: str
) -> None:
    with pytest.raises(InviteInvalid) as caught:
        _invite(db, form)

    assert list(caught.value.errors) == [field]
    assert message in caught.value.errors[field]
    assert db.exec(select(User).where(User.email == "a@b.example")).first() is None


@pytest.mark.parametrize("email", [US_SALES, DE_ADMIN.upper(), JORDAN, "operator@example.com"])
def test_is_an_email_already_used_anywhere_in_portico_refused(db: Session, email: str) -> None:
    with pytest.raises(InviteInvalid) as caught:
        _invite(db, InviteInput(name="Robin", email=email, role=Role.PARTNER_ADMIN))

    assert "already belongs to a Portico user" in caught.value.errors["email"]


@pytest.mark.parametrize(
    ("email", "error"),
    [(US_SALES, NotAllowed), (JORDAN, NotFound), ("operator@example.com", NotFound)],
)
def test_may_only_a_partner_admin_manage_users(db: Session, email: str, error: type) -> None:
    actor = user(db, email)
    sales = user(db, US_SALES)

    with pytest.raises(error):
        invite_user(db, actor, NEW, links=LINKS, now=NOW)
    with pytest.raises(error):
        list_users(db, actor)
    with pytest.raises(error):
        set_user_active(db, actor, sales.id, active=False)  # type: ignore[arg-type]


def test_does_the_list_show_only_the_partners_own_users(db: Session) -> None:
    _invite(db)

    rows = list_users(db, user(db, US_ADMIN))

    emails = {r.user.email for r in rows}
    assert emails == {US_ADMIN, US_SALES, "robin@us-partner.example"}
    assert [r.pending for r in rows if r.user.email == "robin@us-partner.example"] == [True]
    assert [r.is_you for r in rows if r.user.email == US_ADMIN] == [True]


# -- the invitation link -------------------------------------------------------------------


def test_does_the_link_set_a_password_once(db: Session) -> None:
    invited = _invite(db)
    token = _token(db, invited.email)

    accepted = accept_invitation(
        db, LINKS.secret_key, token, password=PASSWORD, confirm=PASSWORD, now=NOW
    )

    assert accepted.id == invited.id and not is_pending(accepted)
    assert authenticate(db, email=invited.email, password=PASSWORD, now=NOW).id == invited.id
    with pytest.raises(InvitationUnusable, match="already been used"):
        accept_invitation(
            db,
            LINKS.secret_key,
            token,
            password="another password!",
            confirm="another password!",
            now=NOW,
        )
    assert authenticate(db, email=invited.email, password=PASSWORD, now=NOW).id == invited.id
    assert db.exec(select(AuditEvent).where(AuditEvent.action == "user.invitation_accepted")).one()


def test_does_the_link_expire_after_7_days(db: Session) -> None:
    invited = _invite(db)
    token = _token(db, invited.email)

    assert invitation_for(db, LINKS.secret_key, token, now=NOW + INVITE_VALID_FOR).id == invited.id
    with pytest.raises(InvitationUnusable, match="expired"):
        invitation_for(
            db, LINKS.secret_key, token, now=NOW + INVITE_VALID_FOR + timedelta(seconds=1)
        )


def test_does_a_resend_replace_the_earlier_link(db: Session) -> None:
    invited = _invite(db)
    first = _token(db, invited.email)

    resend_invitation(db, user(db, US_ADMIN), invited.id, links=LINKS, now=NOW)  # type: ignore[arg-type]
    second = _token(db, invited.email)

    assert second != first
    with pytest.raises(InvitationUnusable, match="replaced"):
        invitation_for(db, LINKS.secret_key, first, now=NOW)
    assert invitation_for(db, LINKS.secret_key, second, now=NOW).id == invited.id


def test_is_a_tampered_or_foreign_token_not_found(db: Session) -> None:
    invited = _invite(db)
    token = _token(db, invited.email)

    with pytest.raises(NotFound):
        invitation_for(db, LINKS.secret_key, token[:-2] + "xx", now=NOW)
    with pytest.raises(NotFound):
        invitation_for(db, "another-secret", token, now=NOW)


def test_is_the_link_of_a_deactivated_invitee_refused(db: Session) -> None:
    invited = _invite(db)
    token = _token(db, invited.email)
    set_user_active(db, user(db, US_ADMIN), invited.id, active=False)  # type: ignore[arg-type]

    with pytest.raises(InvitationUnusable, match="withdrawn"):
        accept_invitation(db, LINKS.secret_key, token, password=PASSWORD, confirm=PASSWORD, now=NOW)


@pytest.mark.parametrize(
    ("password", "confirm", "field", "message"),
    [
        ("short one", "short one", "password", "at least 12"),
        ("robin@us-partner.example", "robin@us-partner.example", "password", "email"),
        ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "password", "different characters"),
        ("password1234", "password1234", "password", "too common"),
        ("x" * 201, "x" * 201, "password", "at most 200"),
        (PASSWORD, PASSWORD + "!", "confirm", "differ"),
    ],
)
def test_does_the_new_password_follow_the_rules(
    db: Session, password: str, confirm: str, field: str, message: str
) -> None:
    invited = _invite(db)
    token = _token(db, invited.email)

    with pytest.raises(PasswordInvalid) as caught:
        accept_invitation(db, LINKS.secret_key, token, password=password, confirm=confirm, now=NOW)

    assert message in caught.value.errors[field]
    assert invitation_for(db, LINKS.secret_key, token, now=NOW).id == invited.id  # still usable


# -- deactivating ----------------------------------------------------------------------------


def test_does_a_deactivated_user_stop_signing_in_until_reactivated(db: Session) -> None:
    admin, sales = user(db, US_ADMIN), user(db, US_SALES)

    set_user_active(db, admin, sales.id, active=False)  # type: ignore[arg-type]

    with pytest.raises(InvalidCredentials):
        authenticate(db, email=US_SALES, password="portico-demo", now=NOW)
    set_user_active(db, admin, sales.id, active=True)  # type: ignore[arg-type]
    assert authenticate(db, email=US_SALES, password="portico-demo", now=NOW).id == sales.id
    actions = db.exec(
        select(AuditEvent.action).where(AuditEvent.subject_type == "user").order_by(AuditEvent.id)
    ).all()
    assert actions == ["user.deactivated", "user.reactivated"]


def test_may_an_admin_not_deactivate_themself(db: Session) -> None:
    admin = user(db, US_ADMIN)

    with pytest.raises(Conflict, match="yourself"):
        set_user_active(db, admin, admin.id, active=False)  # type: ignore[arg-type]

    assert user(db, US_ADMIN).is_active


def test_may_the_partners_last_active_admin_not_be_deactivated(db: Session) -> None:
    first = user(db, US_ADMIN)
    second = _invite(
        db, InviteInput(name="Sam", email="sam@us-partner.example", role=Role.PARTNER_ADMIN)
    )
    # Two admins act at the same moment: Sam deactivates the first admin…
    set_user_active(db, second, first.id, active=False)  # type: ignore[arg-type]

    # …while the first admin, still on the page, tries to deactivate Sam.
    with pytest.raises(Conflict, match="is the last active admin of"):
        set_user_active(db, first, second.id, active=False)  # type: ignore[arg-type]
    # And no path leaves the partner without an active admin.
    with pytest.raises(Conflict, match="yourself"):
        set_user_active(db, second, second.id, active=False)  # type: ignore[arg-type]
    assert user(db, "sam@us-partner.example").is_active


def test_can_an_admin_deactivate_and_reactivate_another_admin(db: Session) -> None:
    admin = user(db, US_ADMIN)
    other = _invite(
        db, InviteInput(name="Sam", email="sam@us-partner.example", role=Role.PARTNER_ADMIN)
    )
    set_user_active(db, admin, other.id, active=False)  # type: ignore[arg-type]

    set_user_active(db, admin, other.id, active=True)  # type: ignore[arg-type]
    set_user_active(db, admin, other.id, active=False)  # type: ignore[arg-type]

    assert not user(db, "sam@us-partner.example").is_active


def test_is_another_partners_user_not_found(db: Session) -> None:
    admin = user(db, US_ADMIN)
    foreign = user(db, DE_ADMIN)

    with pytest.raises(NotFound):
        set_user_active(db, admin, foreign.id, active=False)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        resend_invitation(db, admin, foreign.id, links=LINKS, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        set_user_active(db, admin, user(db, JORDAN).id, active=False)  # type: ignore[arg-type]
    assert user(db, DE_ADMIN).is_active


def test_do_two_admins_deactivating_each_other_at_once_leave_one_active(
    db: Session, engine: Engine
) -> None:
    first = user(db, US_ADMIN)
    second = _invite(
        db, InviteInput(name="Sam", email="sam@us-partner.example", role=Role.PARTNER_ADMIN)
    )
    pairs = [(first.id, second.id), (second.id, first.id)]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def deactivate(actor_id: int, target_id: int) -> None:
        with Session(engine, expire_on_commit=False) as session:
            actor = session.get(User, actor_id)
            assert actor is not None
            start.wait()
            try:
                set_user_active(session, actor, target_id, active=False)
                outcomes.append("done")
            except Conflict:
                outcomes.append("refused")

    threads = [threading.Thread(target=deactivate, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["done", "refused"]
    db.expire_all()
    active = [u for u in (user(db, US_ADMIN), user(db, "sam@us-partner.example")) if u.is_active]
    assert len(active) == 1


def test_do_two_uses_of_one_link_at_once_set_one_password(db: Session, engine: Engine) -> None:
    invited = _invite(db)
    token = _token(db, invited.email)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def accept(password: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            start.wait()
            try:
                accept_invitation(
                    session, LINKS.secret_key, token, password=password, confirm=password, now=NOW
                )
                outcomes[password] = "set"
            except InvitationUnusable:
                outcomes[password] = "refused"

    passwords = ["first long password", "second long password"]
    threads = [threading.Thread(target=accept, args=(p,)) for p in passwords]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["refused", "set"]
    winner = next(p for p, outcome in outcomes.items() if outcome == "set")
    db.expire_all()
    assert authenticate(db, email=invited.email, password=winner, now=NOW).id == invited.id
