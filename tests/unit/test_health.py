"""Connection health: the states, the hook on recorded outcomes, notices e-mailed once,
credential expiry warnings, suggested fixes, retention and the beat schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from hub.schedule import BEAT_SCHEDULE
from hub.tenancy import SUPPORT
from integrations import health, logs, services, tasks
from integrations.base.errors import AuthFailedError, PermissionMissingError
from integrations.base.provider import VerifyResult
from integrations.models import Connection, IntegrationLog
from tests.factories import make_user
from tests.log_rows import link, make_log, make_request_log

pytestmark = pytest.mark.django_db

H = Connection.Health


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def linked(personas):
    return link(personas.account_a)


def state_of(connection) -> str:
    connection.refresh_from_db()
    return connection.health_state


def judge(connection) -> str:
    connection.refresh_from_db()
    return health.judge(connection).state


# Judging the state ---------------------------------------------------------------------------------------


def test_no_activity_is_healthy(linked):
    assert judge(linked) == H.HEALTHY


def test_a_failure_between_successes_is_degraded(personas, linked):
    a = personas.account_a
    make_log(a, "ticket.create", ago=timedelta(hours=3))
    make_log(a, "ticket.sync", outcome="error", ago=timedelta(hours=2), message="Incident #1: timeout")
    make_log(a, "ticket.create", ago=timedelta(hours=1))
    assert judge(linked) == H.DEGRADED
    verdict = health.judge(linked)
    assert verdict.error == "Incident #1: timeout"


def test_failures_older_than_the_window_are_forgotten(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=30))
    make_log(personas.account_a, "ticket.create", ago=timedelta(hours=29))
    assert judge(linked) == H.HEALTHY


def test_a_fresh_streak_of_failures_is_degraded_then_broken_after_the_window(personas, linked, settings):
    make_log(personas.account_a, "ticket.create", ago=timedelta(hours=30))
    make_log(personas.account_a, "billing.sync", outcome="error", ago=timedelta(hours=20))
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(minutes=1), message="latest")
    assert judge(linked) == H.DEGRADED
    settings.HUB_BROKEN_AFTER_HOURS = 12  # configurable
    assert judge(linked) == H.BROKEN
    assert health.judge(linked).error == "latest"


def test_only_failures_for_a_day_is_broken(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=25))
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=1))
    assert judge(linked) == H.BROKEN


def test_an_authentication_failure_is_credentials_rejected(personas, linked):
    make_log(personas.account_a, "ticket.create", ago=timedelta(hours=2))
    make_log(personas.account_a, "connection.verify", outcome="error", error_kind="auth_failed", ago=timedelta(hours=1),
             message="Authentication failed: check the Public and Private keys.")
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="unavailable", message="timeout")
    assert judge(linked) == H.CREDENTIALS_REJECTED
    assert health.judge(linked).error.startswith("Authentication failed")


def test_unreadable_credentials_are_credentials_rejected(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="credentials_unreadable")
    assert judge(linked) == H.CREDENTIALS_REJECTED


def test_an_auth_failure_before_new_credentials_no_longer_counts(personas, linked):
    make_log(personas.account_a, "connection.verify", outcome="error", error_kind="auth_failed", ago=timedelta(hours=1))
    Connection.objects.filter(pk=linked.pk).update(credentials_updated_at=timezone.now() - timedelta(minutes=5))
    assert judge(linked) == H.DEGRADED


def test_request_rows_and_unrelated_actions_do_not_count(personas, linked):
    a = personas.account_a
    make_request_log(a, "ticket.sync", method="GET", path="/service/tickets/99", status=404)  # a normal lookup
    make_log(a, "connection.permissions", outcome="error", message="Missing permissions: Agreements")
    make_log(a, "mapping.company", outcome="error")
    make_log(a, "connection.health", outcome="error")
    make_log(a, "ticket.sync", outcome="skipped", message="paused")
    assert judge(linked) == H.HEALTHY


def test_another_connections_rows_do_not_count(personas, linked):
    link(personas.account_b)
    make_log(personas.account_b, "ticket.sync", outcome="error", error_kind="auth_failed")
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="auth_failed", connection=None)
    assert judge(linked) == H.HEALTHY


# Transitions and notices ----------------------------------------------------------------------------------


def test_broken_emails_the_admins_once_and_recovery_says_so(personas, linked):
    second_admin = make_user("ada@acme.example", account=personas.account_a)
    make_user("nobody@acme.example", account=personas.account_a, role=SUPPORT)
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=26),
             message="Incident #4: ConnectWise could not create the ticket: the Service Board has no Default Team")

    assert health.evaluate(linked) == H.BROKEN
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@acme.example", "alice@acme.example"]  # admins only
    message = mail.outbox[0]
    assert message.subject == "[PSA hub] ConnectWise Manage connection of Acme IT: Broken"
    assert "Last error: Incident #4" in message.body and "Default Team" in message.body
    assert "Likely fix — Set the board's Default Team" in message.body
    assert "http://" in message.body and "/settings/integrations/" in message.body
    linked.refresh_from_db()
    assert linked.health_since is not None and linked.health_notified == H.BROKEN

    # Evaluated again (hook, beat): no second e-mail.
    health.evaluate(linked)
    health.evaluate_due()
    assert len(mail.outbox) == 2

    make_log(personas.account_a, "ticket.create", message="Created ticket 9")
    assert health.evaluate(linked) == H.HEALTHY
    assert len(mail.outbox) == 4
    assert mail.outbox[-1].subject == "[PSA hub] ConnectWise Manage connection of Acme IT works again"
    entries = list(IntegrationLog.objects.filter(action="connection.health").order_by("id").values_list("message", flat=True))
    assert entries[0] == ("Connection health: Healthy → Broken. Last error: Incident #4: ConnectWise could not create the "
                          "ticket: the Service Board has no Default Team")
    assert entries[1].startswith("E-mailed 2 admins: [PSA hub]")
    assert "Broken → Healthy" in entries[2] and entries[3].startswith("E-mailed 2 admins")
    assert second_admin


def test_broken_then_degraded_then_broken_again_emails_once(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=26))
    health.evaluate(linked)
    make_log(personas.account_a, "ticket.create", ago=timedelta(hours=25))  # a success between the failures
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=24, minutes=30))
    assert health.evaluate(linked) == H.BROKEN  # first failure since the success is > 24 h old
    make_log(personas.account_a, "ticket.create", ago=timedelta(hours=3))
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=2))
    assert health.evaluate(linked) == H.DEGRADED
    assert len(mail.outbox) == 1  # not told "works again" while failures go on


def test_the_first_success_after_credentials_rejected_is_healthy_at_once(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="auth_failed", ago=timedelta(minutes=10))
    assert health.evaluate(linked) == H.CREDENTIALS_REJECTED
    make_log(personas.account_a, "connection.verify", message="Connected")
    assert health.evaluate(linked) == H.HEALTHY  # not Degraded for a day after the fix
    assert health.evaluate(linked) == H.HEALTHY  # and the old failures are not counted again
    make_log(personas.account_a, "ticket.sync", outcome="error", message="timeout")
    assert health.evaluate(linked) == H.DEGRADED
    assert [m.subject.rsplit(" ", 2)[-2:] for m in mail.outbox] == [["Credentials", "rejected"], ["works", "again"]]


def test_degraded_and_back_sends_nothing(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=1))
    assert health.evaluate(linked) == H.DEGRADED
    make_log(personas.account_a, "ticket.create")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(health, "broken_after", lambda: timedelta(minutes=30))
        assert health.evaluate(linked) == H.HEALTHY
    assert mail.outbox == []


def test_credentials_rejected_after_broken_is_a_new_notice(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=26))
    health.evaluate(linked)
    make_log(personas.account_a, "connection.verify", outcome="error", error_kind="auth_failed",
             message="Authentication failed")
    assert health.evaluate(linked) == H.CREDENTIALS_REJECTED
    assert [m.subject.rsplit(": ", 1)[1] for m in mail.outbox] == ["Broken", "Credentials rejected"]
    assert "Update credentials" in mail.outbox[1].body and "/settings/integrations/link/connectwise/" in mail.outbox[1].body


def test_a_failed_send_is_retried_by_the_next_evaluation(personas, linked, monkeypatch):
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="auth_failed")

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(health, "send_mass_mail", refuse)
    assert health.evaluate(linked) == H.CREDENTIALS_REJECTED
    linked.refresh_from_db()
    assert linked.health_notified == "" and mail.outbox == []
    monkeypatch.undo()
    health.evaluate_due()
    assert len(mail.outbox) == 1


def test_two_evaluations_at_once_send_one_email(personas, linked):
    """The notice is claimed with a conditional UPDATE: a second evaluator holding a stale
    row cannot claim it again."""
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="auth_failed")
    stale = Connection.objects.get(pk=linked.pk)  # read before the first evaluator told the admins
    health.evaluate(linked)
    stale.health_state = H.CREDENTIALS_REJECTED  # what the second evaluator judged too
    health._notify_if_due(stale, health.judge(stale))
    assert len(mail.outbox) == 1


def test_no_admin_email_is_logged(personas, linked):
    personas.admin.email = ""
    personas.admin.save()
    make_log(personas.account_a, "ticket.sync", outcome="error", error_kind="auth_failed")
    health.evaluate(linked)
    assert mail.outbox == []
    assert IntegrationLog.objects.filter(action="connection.health", message__startswith="No admin with an e-mail").exists()


# The hook on recorded outcomes --------------------------------------------------------------------------------


def test_log_action_evaluates_after_commit(personas, linked, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.log_action(personas.account_a, "ticket.sync", "Authentication failed", outcome="error",
                            connection=linked, error_kind="auth_failed")
    assert len(callbacks) == 1
    assert state_of(linked) == H.CREDENTIALS_REJECTED and len(mail.outbox) == 1


def test_the_hook_skips_what_cannot_change_the_state(personas, linked, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.log_action(personas.account_a, "mapping.company", "Tenant mapped", connection=linked)
        services.log_action(personas.account_a, "ticket.sync", "held", outcome="skipped", connection=linked)
        services.log_action(personas.account_a, "ticket.sync", "no connection", outcome="error")
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.log_action(personas.account_a, "ticket.create", "Created", connection=linked)
    assert len(callbacks) == 1 and state_of(linked) == H.HEALTHY


def test_a_health_error_never_breaks_the_work_being_logged(personas, linked, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    monkeypatch.setattr(health, "evaluate", lambda *a, **k: 1 / 0)
    with django_capture_on_commit_callbacks(execute=True):
        entry = services.log_action(personas.account_a, "ticket.sync", "x", outcome="error", connection=linked)
    assert entry.pk


def test_log_action_keeps_the_kind_of_the_error_being_handled(personas, linked):
    try:
        raise PermissionMissingError("no access", which="Agreements")
    except PermissionMissingError:
        entry = services.log_action(personas.account_a, "billing.sync", "Incident: no access", outcome="error",
                                    connection=linked)
    assert entry.error_kind == "permission_missing"
    assert services.log_action(personas.account_a, "billing.sync", "plain", outcome="error").error_kind == ""
    assert services.log_action(personas.account_a, "ticket.create", "ok").action_group == "ticket"


def test_verification_with_revoked_credentials_turns_credentials_rejected(personas, memory_psa, private_cache,
                                                                          django_capture_on_commit_callbacks):
    connection = services.save_connection(personas.account_a, "connectwise", {"site": "acme.example.com"},
                                          {"api_key": "k-123456789"})
    memory_psa.mode = "auth_failed"
    with django_capture_on_commit_callbacks(execute=True):
        services.verify_connection(str(connection.pk), "cid-1")
    failure = IntegrationLog.objects.get(action="connection.verify", outcome="error", http_method="")
    assert failure.error_kind == "auth_failed"
    assert state_of(connection) == H.CREDENTIALS_REJECTED
    assert len(mail.outbox) == 1 and "Credentials rejected" in mail.outbox[0].subject

    memory_psa.mode = "ok"
    with django_capture_on_commit_callbacks(execute=True):
        services.verify_connection(str(connection.pk), "cid-2")
    assert state_of(connection) == H.HEALTHY
    assert len(mail.outbox) == 2 and "works again" in mail.outbox[1].subject


def test_a_task_giving_up_records_the_kind(personas, linked, django_capture_on_commit_callbacks):
    class FakeTask:
        max_retries = 0

        class request:
            retries = 0

    with django_capture_on_commit_callbacks(execute=True):
        try:
            raise AuthFailedError("Authentication failed: keys refused")
        except AuthFailedError as exc:
            tasks._retry_or_give_up(FakeTask(), exc, str(linked.pk), "import.companies", "cid")
    assert IntegrationLog.objects.get(action="import.companies").error_kind == "auth_failed"
    assert state_of(linked) == H.CREDENTIALS_REJECTED


def test_the_beat_task_finds_connections_broken_by_time(personas, linked):
    make_log(personas.account_a, "ticket.sync", outcome="error", ago=timedelta(hours=25))
    Connection.objects.filter(pk=linked.pk).update(health_state=H.DEGRADED)
    assert tasks.evaluate_health() >= 1
    assert state_of(linked) == H.BROKEN and len(mail.outbox) == 1


# Credential expiry ----------------------------------------------------------------------------------------------


def test_verify_stores_the_expiry_the_psa_gives(personas, memory_psa, private_cache, monkeypatch):
    from tests.fakes import memory

    expires = timezone.now() + timedelta(days=40)
    monkeypatch.setattr(memory.MemoryProvider, "verify",
                        lambda self: VerifyResult("Memory PSA", {}, credential_expires_at=expires))
    connection = services.save_connection(personas.account_a, "halo", {"site": "acme.example.com"}, {"api_key": "k-1234567"})
    services.verify_connection(str(connection.pk), "cid")
    connection.refresh_from_db()
    assert connection.credential_expires_at == expires


def test_a_psa_expiry_within_14_days_warns_once_per_date(personas, linked):
    expires = timezone.now() + timedelta(days=10, hours=2)
    Connection.objects.filter(pk=linked.pk).update(vendor="halo", credential_expires_at=expires)
    linked.refresh_from_db()
    found = health.expiry(linked)
    assert found.warn and found.source == "psa" and found.days_left == 10
    assert "The Halo PSA client secret expires on" in found.message

    assert health.warn_expiring() == 1
    assert health.warn_expiring() == 0
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@acme.example"]
    assert "expire soon" in mail.outbox[0].subject and "/settings/integrations/link/halo/" in mail.outbox[0].body

    Connection.objects.filter(pk=linked.pk).update(credential_expires_at=expires + timedelta(days=1))
    assert health.warn_expiring() == 1  # a new date is a new warning
    assert len(mail.outbox) == 2


def test_an_expiry_far_away_does_not_warn(personas, linked):
    Connection.objects.filter(pk=linked.pk).update(credential_expires_at=timezone.now() + timedelta(days=60))
    linked.refresh_from_db()
    assert not health.expiry(linked).warn
    assert health.warn_expiring() == 0 and mail.outbox == []


def test_old_keys_warn_by_age(personas, linked, settings):
    Connection.objects.filter(pk=linked.pk).update(credentials_updated_at=timezone.now() - timedelta(days=355))
    linked.refresh_from_db()
    found = health.expiry(linked)
    assert found.source == "age" and found.warn and "saved 355 days ago" in found.message
    assert health.warn_expiring() == 1 and len(mail.outbox) == 1
    settings.HUB_CREDENTIAL_MAX_AGE_DAYS = 0
    assert health.expiry(linked) is None


def test_the_page_shows_the_expiry_warning(personas, page_client, linked):
    Connection.objects.filter(pk=linked.pk).update(credential_expires_at=timezone.now() + timedelta(days=3))
    html = page_client(personas.admin).get("/settings/integrations/").content.decode()
    assert 'id="expiry-warning"' in html and "expires on" in html


# Suggested fixes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("message,kind,title", [
    ("Authentication failed: check the keys", "auth_failed", "Update credentials"),
    ("ConnectWise answered 401 Unauthorized", "", "Update credentials"),
    ("Incident #3: Cannot find default team for board specified (field: board)", "invalid", "Set the board's Default Team"),
    ("ConnectWise API user does not have permission to access Service > Priority.", "permission_missing",
     "Check permissions"),
    ("403 Forbidden", "", "Check permissions"),
    ("Tenant “Globex” is not mapped to a PSA company and no default company is set.", "", "Map tenants"),
    ("Ticketing is not set up: choose the board or queue on the Ticketing page.", "", "Set up ticketing"),
    ("Multiple agreements contain the mapped product for this company.", "blocked", "Remove the duplicate product"),
    ("Could not reach ConnectWise at x: the connection timed out.", "unavailable", "Wait, then check the site URL"),
    ("Something odd", "", "Read the failed entries"),
])
def test_suggested_fixes(linked, message, kind, title):
    fix = health.suggest_fix(message, kind, linked)
    assert fix.title == title


def test_the_credentials_fix_names_the_vendors_fields(linked):
    fix = health.suggest_fix("Authentication failed", "auth_failed", linked)
    assert "Company ID, Site URL, Public and Private keys" in fix.text
    assert fix.url == "/settings/integrations/link/connectwise/"


# Retention and beat ----------------------------------------------------------------------------------------------


def test_retention_deletes_old_entries_in_batches(personas, linked, settings, django_assert_max_num_queries):
    settings.HUB_LOG_RETENTION_DAYS = 90
    old = [make_log(personas.account_a, ago=timedelta(days=91, minutes=n)) for n in range(7)]
    kept = make_log(personas.account_a, ago=timedelta(days=89))
    assert logs.purge_old_entries(batch=3) == 7
    assert not IntegrationLog.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert IntegrationLog.objects.filter(pk=kept.pk).exists()
    settings.HUB_LOG_RETENTION_DAYS = 0
    make_log(personas.account_a, ago=timedelta(days=400))
    assert tasks.purge_old_logs() == 0


def test_retention_stops_after_its_batch_limit(personas, linked):
    for n in range(5):
        make_log(personas.account_a, ago=timedelta(days=100, minutes=n))
    assert logs.purge_old_entries(days=90, batch=2, max_batches=2) == 4
    assert logs.purge_old_entries(days=90, batch=2) == 1


def test_beat_runs_health_expiry_and_retention():
    tasks_scheduled = {entry["task"]: entry["schedule"] for entry in BEAT_SCHEDULE.values()}
    assert tasks_scheduled["integrations.evaluate_health"] == timedelta(minutes=5)
    assert tasks_scheduled["integrations.purge_old_logs"] <= timedelta(days=1)
    assert "integrations.warn_expiring_credentials" in tasks_scheduled
