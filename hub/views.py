"""Pages of the core: sign-in, account switcher, tenants, API keys, system status, probes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from hub import tasks
from hub.forms import ApiKeyForm, SignInForm, TenantForm
from hub.models import ApiKey, Tenant, WorkerPing
from hub.tenancy import ADMIN, SESSION_KEY, accounts_for, role_required


class SignInView(auth_views.LoginView):
    template_name = "hub/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True


@login_required
def home(request):
    if request.account is None:
        return redirect("no_account")
    return redirect("integrations")


@login_required
def no_account(request):
    if request.account is not None:
        return redirect("home")
    return render(request, "hub/no_account.html")


@require_POST
@login_required
def switch_account(request):
    account_id = request.POST.get("account", "")
    if not account_id.isdigit():
        raise Http404("No such account.")
    account = get_object_or_404(accounts_for(request.user), pk=account_id)
    request.session[SESSION_KEY] = account.pk
    messages.success(request, f"Now working in {account.name}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("home")
    return redirect(target)


# Tenants -----------------------------------------------------------------------------------


@role_required()
def tenant_list(request):
    query = request.GET.get("q", "").strip()
    show = request.GET.get("show", "active")
    tenants = Tenant.objects.for_account(request.account)
    if query:
        tenants = tenants.filter(Q(name__icontains=query) | Q(external_id__icontains=query))
    if show == "active":
        tenants = tenants.filter(is_active=True)
    elif show == "inactive":
        tenants = tenants.filter(is_active=False)
    page = Paginator(tenants, 50).get_page(request.GET.get("page"))
    context = {"page": page, "query": query, "show": show, "section": "tenants"}
    if request.htmx:
        return render(request, "hub/tenants/_table.html", context)
    return render(request, "hub/tenants/list.html", context)


@role_required()
def tenant_edit(request, pk: int | None = None):
    tenant = get_object_or_404(Tenant.objects.for_account(request.account), pk=pk) if pk else None
    form = TenantForm(request.POST or None, instance=tenant, account=request.account)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Tenant “{saved.name}” saved.")
        return redirect("tenants")
    return render(request, "hub/tenants/form.html", {"form": form, "tenant": tenant, "section": "tenants"})


@require_POST
@role_required()
def tenant_set_active(request, pk: int):
    tenant = get_object_or_404(Tenant.objects.for_account(request.account), pk=pk)
    tenant.is_active = request.POST.get("active") == "1"
    tenant.save(update_fields=["is_active", "updated_at"])
    state = "reactivated" if tenant.is_active else "deactivated"
    messages.success(request, f"Tenant “{tenant.name}” {state}.")
    return redirect("tenants")


# API keys ----------------------------------------------------------------------------------


@role_required(ADMIN)
def api_keys(request):
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        _, new_key = ApiKey.issue(
            account=request.account, name=form.cleaned_data["name"], role=form.cleaned_data["role"], created_by=request.user
        )
        form = ApiKeyForm()
    keys = ApiKey.objects.for_account(request.account)
    return render(request, "hub/api_keys.html", {"form": form, "keys": keys, "new_key": new_key, "section": "api_keys"})


@require_POST
@role_required(ADMIN)
def api_key_revoke(request, pk: int):
    key = get_object_or_404(ApiKey.objects.for_account(request.account), pk=pk)
    key.revoke()
    messages.success(request, f"API key “{key.name}” revoked: requests with it now get 401.")
    return redirect("api_keys")


# System status: proves the broker and a worker are alive ----------------------------------------


@role_required()
def system(request):
    heartbeat = WorkerPing.objects.filter(kind="heartbeat", answered_at__isnull=False).first()
    return render(request, "hub/system.html", {"heartbeat": heartbeat, "section": "system"})


@require_POST
@role_required()
def system_ping(request):
    with transaction.atomic():
        ping = WorkerPing.objects.create()
        transaction.on_commit(lambda: tasks.answer_ping.delay(str(ping.pk)))
    return render(request, "hub/_ping.html", {"ping": ping})


@require_GET
@role_required()
def system_ping_status(request, pk):
    ping = get_object_or_404(WorkerPing, pk=pk, kind="ping")
    return render(request, "hub/_ping.html", {"ping": ping})


# Probes for orchestrators ---------------------------------------------------------------------


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def readyz(request):
    checks = {"database": "ok", "broker": "ok"}
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure means "not ready"; the class name says which
        checks["database"] = f"unreachable ({type(exc).__name__})"
    try:
        from hub.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        checks["broker"] = f"unreachable ({type(exc).__name__})"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"ready": ready, **checks}, status=200 if ready else 503)
