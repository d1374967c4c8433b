"""Create the first admin user and account when the hub has none (used by `make run`)."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from hub.models import Account, Membership
from hub.tenancy import ADMIN


class Command(BaseCommand):
    help = "Create a first admin user and account if none exist (HUB_ADMIN_EMAIL / HUB_ADMIN_PASSWORD)."

    def handle(self, *args, **options):
        User = get_user_model()
        login_url = f"{settings.HUB_BASE_URL}/login/"
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(f"Sign in at {login_url} with your admin user.")
            return
        email = settings.HUB_ADMIN_EMAIL
        password = settings.HUB_ADMIN_PASSWORD or secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(username=email, email=email, password=password)
            account = Account.objects.create(name=settings.HUB_ADMIN_ACCOUNT)
            Membership.objects.create(user=user, account=account, role=ADMIN)
        shown = "the password in HUB_ADMIN_PASSWORD" if settings.HUB_ADMIN_PASSWORD else f"password {password}"
        self.stdout.write(f"Created admin {email} in account “{account.name}”.")
        self.stdout.write(f"Sign in at {login_url} as {email} with {shown} (change it after signing in).")
