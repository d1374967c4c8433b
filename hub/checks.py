"""System checks: the hub refuses to start without valid credential encryption keys."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from hub import vault


@checks.register("hub", deploy=False)
def encryption_keys_check(app_configs=None, **kwargs):
    try:
        vault.parse_keys(getattr(settings, vault.SETTING, ""))
    except vault.VaultError as exc:
        return [checks.Error(str(exc), hint="See .env.example for how to make a key.", id="hub.E001")]
    return []


def refuse_to_start_without_keys() -> None:
    """For processes that do not run system checks (gunicorn, Celery)."""
    problems = encryption_keys_check()
    if problems:
        raise ImproperlyConfigured(problems[0].msg)
