"""Settings → Ticketing → Status sync: the host product's webhook (URL, signing secret, the last
50 delivery attempts) and how status changes come back from the PSA (webhook, callback or
polling, and why). Nothing here calls the PSA or the host product (DESIGN.md rule 3)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render

from hub.tenancy import role_required
from integrations.models import Connection
from ticketing.sync import host, polling, registration
from ticketing.models import StatusSync


class HostWebhookForm(forms.Form):
    url = forms.URLField(label="Webhook URL", required=False, max_length=1000, assume_scheme="https",
                         help_text="The host product's endpoint; the hub POSTs incident changes made in the PSA to it.")
    secret = forms.CharField(label="Signing secret", required=False, min_length=16, max_length=200,
                             widget=forms.PasswordInput(render_value=False),
                             help_text="Used for X-Hub-Signature (HMAC-SHA256 of the body). Leave blank to keep the stored one.")
    active = forms.BooleanField(label="Send deliveries", required=False, initial=True)

    def __init__(self, *args, secret_set: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.secret_set = secret_set

    def clean(self):
        data = super().clean()
        if data.get("url") and not (data.get("secret") or self.secret_set):
            self.add_error("secret", "Set a signing secret: every delivery is signed.")
        return data


def context_for(account) -> dict:
    connection = Connection.objects.for_account(account).first()
    sync = StatusSync.objects.filter(connection_id=connection.pk).first() if connection else None
    return {
        "connection": connection,
        "sync": sync,
        "sync_notice": registration.fallback_notice(sync),
        "reconcile_minutes": polling.RECONCILE_MINUTES,
        "attempts": host.recent_attempts(account),
    }


@role_required()
def webhook_page(request):
    hook = host.webhook_for(request.account)
    initial = {"url": hook.url if hook else "", "active": hook.active if hook else True}
    form = HostWebhookForm(initial=initial, secret_set=bool(hook and hook.secret_set))
    if request.method == "POST":
        if not request.actor.is_admin:
            messages.error(request, "Only admins can change the webhook.")
            return redirect("ticketing_webhook")
        form = HostWebhookForm(request.POST, secret_set=bool(hook and hook.secret_set))
        if form.is_valid():
            host.save_webhook(request.account, url=form.cleaned_data["url"], secret=form.cleaned_data["secret"] or None,
                                  active=form.cleaned_data["active"])
            messages.success(request, "Webhook saved.")
            return redirect("ticketing_webhook")
    context = {"section": "ticketing", "form": form, "hook": hook, **context_for(request.account)}
    return render(request, "ticketing/webhook.html", context, status=400 if form.errors else 200)

