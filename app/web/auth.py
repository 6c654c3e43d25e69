"""Who may open a view: login and role decorators, and the acting user's tenant."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort
from flask_login import current_user, login_required

from app.models import Role, User

F = TypeVar("F", bound=Callable[..., Any])

PARTNER_ROLES = (Role.PARTNER_ADMIN, Role.PARTNER_SALES)


def role_required(*roles: Role) -> Callable[[F], F]:
    """Require a signed-in user with one of ``roles``; others get 404 (nothing to see)."""

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(404)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


partner_required = role_required(*PARTNER_ROLES)
partner_admin_required = role_required(Role.PARTNER_ADMIN)


def partner_admin_only(reason: str) -> Callable[[F], F]:
    """Partner admins only, saying why to other partner users.

    A partner sales user gets 403 with ``reason`` (they can see the area exists, so
    hiding it helps nobody); customers and operators get 404; anonymous users sign in.
    The services check the role again.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        @partner_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role != Role.PARTNER_ADMIN:
                abort(403, description=reason)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


operator_required = role_required(Role.OPERATOR)
customer_required = role_required(Role.CUSTOMER)


def acting_user() -> User:
    """The signed-in user as a model instance (views pass it to services)."""
    return current_user._get_current_object()  # type: ignore[attr-defined]


def home_endpoint(user: User) -> str:
    """Where a user lands after signing in."""
    return {
        Role.OPERATOR: "operator.partners",
        Role.PARTNER_ADMIN: "partner.customers",
        Role.PARTNER_SALES: "partner.customers",
        Role.CUSTOMER: "portal.account",
    }[user.role]
