"""Who is acting for which account: account-scoped managers, request.account and roles.

Every account-owned model uses ``AccountScopedManager`` and every view or API query of such
rows goes through ``Model.objects.for_account(account)`` (DESIGN.md rule 7): an object of
another account is simply not found, which the views turn into a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest
from django.shortcuts import redirect

ADMIN, OPERATOR, SUPPORT = "admin", "operator", "support"
ROLE_CHOICES = [(ADMIN, "Admin"), (OPERATOR, "Operator"), (SUPPORT, "Support (read-only)")]
# What each role may do. Vendor support staff (is_staff without a membership) read only.
_RANK = {SUPPORT: 0, OPERATOR: 1, ADMIN: 2}
SESSION_KEY = "hub_account_id"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class AccountScopedQuerySet(models.QuerySet):
    def for_account(self, account) -> AccountScopedQuerySet:
        return self.filter(account=account)


class AccountScopedManager(models.Manager.from_queryset(AccountScopedQuerySet)):
    pass


@dataclass(frozen=True)
class Actor:
    """The role someone holds in the current account; staff without a membership read only."""

    role: str | None
    is_staff: bool = False

    @property
    def can_read(self) -> bool:
        return self.role is not None or self.is_staff

    def has(self, needed: str) -> bool:
        return self.role is not None and _RANK[self.role] >= _RANK[needed]

    @property
    def can_write(self) -> bool:
        return self.has(OPERATOR)

    @property
    def is_admin(self) -> bool:
        return self.has(ADMIN)

    @property
    def label(self) -> str:
        if self.role:
            return dict(ROLE_CHOICES)[self.role]
        return "Vendor support (read-only)" if self.is_staff else ""


def accounts_for(user):
    """The accounts a person may open: their memberships, or every account for staff."""
    from hub.models import Account

    if not user.is_authenticated:
        return Account.objects.none()
    if user.is_staff:
        return Account.objects.order_by("name")
    return Account.objects.filter(memberships__user=user).order_by("name")


def actor_for(user, account) -> Actor:
    from hub.models import Membership

    if account is None or not user.is_authenticated:
        return Actor(role=None)
    role = Membership.objects.filter(user=user, account=account).values_list("role", flat=True).first()
    return Actor(role=role, is_staff=user.is_staff)


class AccountMiddleware:
    """Sets request.account (the account chosen in the session) and request.actor."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        request.account = None
        request.actor = Actor(role=None)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            allowed = accounts_for(user)
            account = allowed.filter(pk=request.session.get(SESSION_KEY)).first() or allowed.first()
            if account is not None:
                request.session[SESSION_KEY] = account.pk
                request.account = account
                request.actor = actor_for(user, account)
        return self.get_response(request)


def account_context(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "account": getattr(request, "account", None),
        "actor": getattr(request, "actor", None),
        "switchable_accounts": accounts_for(user) if user is not None else [],
    }


def role_required(needed: str | None = None):
    """Page decorator: signed in with an account chosen; reading needs any role, writing
    needs operator, and `needed` (when given) is required for every method."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect(f"/login/?next={request.path}")
            if request.account is None:
                return redirect("no_account")
            if needed is not None:
                allowed = request.actor.has(needed)
            elif request.method in SAFE_METHODS:
                allowed = request.actor.can_read
            else:
                allowed = request.actor.can_write
            if not allowed:
                raise PermissionDenied("Your role in this account does not allow this.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
