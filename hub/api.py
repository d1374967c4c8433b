"""REST API foundations: API-key authentication, account scoping, roles, the error format.

DRF imports these classes while it loads its own views, so this module must not import
rest_framework.views (or anything that does) at import time.
"""

from __future__ import annotations

from django.http import Http404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, pagination, permissions, status

from hub.models import ApiKey
from hub.tenancy import Actor, accounts_for, actor_for


class ApiKeyPrincipal:
    """request.user for API-key requests: the key acts for its account with the key's role."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, key: ApiKey):
        self.key = key
        self.pk = None

    def __str__(self) -> str:
        return f"API key {self.key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        parsed = ApiKey.parse(presented.strip())
        if parsed is None:
            raise exceptions.AuthenticationFailed(
                "The API key is malformed: send 'Authorization: Bearer hub_…' with the whole key as it was shown."
            )
        prefix, secret = parsed
        key = ApiKey.objects.select_related("account").filter(prefix=prefix).first()
        if key is None or not key.matches(secret):
            raise exceptions.AuthenticationFailed("The API key is not valid. Create a new one under Settings → API keys.")
        if key.is_revoked:
            raise exceptions.AuthenticationFailed("This API key was revoked. Create a new one under Settings → API keys.")
        # One write a minute at most: last-used is for people, not an audit trail.
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request.account = key.account
        request.actor = Actor(role=key.role)
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request):
        return self.keyword


class SessionAuthentication(authentication.SessionAuthentication):
    """The pages' session, acting for the account chosen in the account switcher."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        django_request = request._request
        account = getattr(django_request, "account", None)
        if account is None:
            account = accounts_for(user).first()
        request.account = account
        request.actor = actor_for(user, account)
        return result


class AccountRolePermission(permissions.BasePermission):
    """Reading needs any role in the account (or staff); writing needs operator or admin."""

    message = "Your role in this account is read-only."
    admin_only = False

    def has_permission(self, request, view):
        if request.user is None or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("Authentication required: send 'Authorization: Bearer <API key>'.")
        actor: Actor = getattr(request, "actor", Actor(role=None))
        if getattr(request, "account", None) is None or not actor.can_read:
            raise exceptions.PermissionDenied("You do not belong to an account.")
        if getattr(view, "admin_only", False):
            return actor.is_admin if request.method not in permissions.SAFE_METHODS else actor.can_read
        return request.method in permissions.SAFE_METHODS or actor.can_write


class Pagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def field_messages(errors, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested validation errors into {"items[1].units": [messages]}; DRF ≥ 3.15
    reports list entries as {1: {...}}, older versions as lists, and both are named alike."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            if isinstance(key, int):
                name = f"{prefix}[{key}]"
            elif key == "non_field_errors":
                name = prefix or key
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(field_messages(value, name))
    elif isinstance(errors, list) and errors and all(isinstance(item, (dict, list)) for item in errors):
        for index, item in enumerate(errors):
            flat.update(field_messages(item, f"{prefix}[{index}]"))
    elif errors:
        flat[prefix] = [str(item) for item in (errors if isinstance(errors, list) else [errors])]
    return flat


def _code_for(exc) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return "unauthenticated"
    if isinstance(exc, exceptions.PermissionDenied):
        return "forbidden"
    if isinstance(exc, (exceptions.NotFound, Http404)):
        return "not_found"
    return getattr(exc, "default_code", "error")


def exception_handler(exc, context):
    """Every error body is {"error": {"code", "message", "fields"}}."""
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    fields: dict[str, list[str]] = {}
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(detail, list):
            message = " ".join(str(item) for item in detail)
        else:
            fields = field_messages(detail)
            first_field, first_messages = next(iter(fields.items()), ("", [""]))
            message = f"{first_field}: {first_messages[0]}" if first_field else "The request is not valid."
    elif isinstance(detail, dict) and "detail" in detail:
        message = str(detail["detail"])
    else:
        message = str(detail)
    # Errors other than validation (e.g. a 409 on a duplicate) may name the field concerned.
    fields = fields or dict(getattr(exc, "hub_fields", None) or {})
    code = getattr(exc, "hub_code", None) or _code_for(exc)
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class AccountScopedMixin:
    """Views query through Model.objects.for_account(request.account), never unscoped."""

    model = None

    def scoped(self):
        return self.model.objects.for_account(self.request.account)


class SessionSecurity(OpenApiAuthenticationExtension):
    target_class = "hub.api.SessionAuthentication"
    name = "Session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "The pages' sign-in session."}


class ApiKeySecurity(OpenApiAuthenticationExtension):
    target_class = "hub.api.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key from Settings → API keys."}


