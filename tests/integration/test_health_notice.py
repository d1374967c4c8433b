"""A ConnectWise connection against the HTTP fake whose keys are revoked turns Credentials
rejected, and its admins get one e-mail: the real worker verifies, records the failure,
evaluates the health and sends the notice (console e-mail backend: the message is in the
worker's log); later failures and the beat's evaluation send no second one."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail

from hub.tenancy import SUPPORT
from integrations import health, registry, services
from integrations.models import Connection, IntegrationLog
from tests.factories import make_user
from tests.flows import wait_for

pytestmark = pytest.mark.integration

# Headers may be folded over two lines by the e-mail package.
SUBJECT = re.compile(r"Subject: \[PSA hub\] ConnectWise Manage connection of Acme IT:\s+Credentials\s+rejected")


def link_connectwise(account, psas) -> Connection:
    """What the link form does with the fake's values, then verification is queued."""
    form = registry.get("connectwise").form(psas.link_values("connectwise"), allow_private=True)
    assert form.is_valid(), form.errors
    config, secrets = form.config_and_secrets()
    return services.save_connection(account, "connectwise", config, secrets)


def test_revoked_keys_turn_credentials_rejected_and_admins_get_one_email(
    worker_process, psas, transactional_db, personas
):
    make_user("ada@acme.example", account=personas.account_a)  # a second admin
    make_user("sid@acme.example", account=personas.account_a, role=SUPPORT)  # not an admin: no e-mail
    connection = link_connectwise(personas.account_a, psas)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).status == "connected", "the first verification",
             worker_process)
    connection.refresh_from_db()
    assert connection.health_state == Connection.Health.HEALTHY

    psas.connectwise.revoke()
    services.queue_verification(connection, services.new_correlation_id())

    connection = wait_for(
        lambda: Connection.objects.filter(pk=connection.pk, health_state="credentials_rejected", health_notified="credentials_rejected").first(),
        "Credentials rejected",
        worker_process,
    )
    failure = IntegrationLog.objects.filter(connection=connection, action="connection.verify", outcome="error",
                                            http_method="").latest("created_at")
    assert failure.error_kind == "auth_failed"
    assert connection.health_error == failure.message and "Authentication failed" in failure.message
    # The PSA request that was refused is in the log, with its status, and no secret.
    refused = IntegrationLog.objects.filter(correlation_id=failure.correlation_id, http_status=401)
    assert refused.exists()
    for row in IntegrationLog.objects.filter(connection=connection):
        for secret in psas.secrets("connectwise"):
            assert secret not in row.message + row.http_path + row.request_excerpt + row.response_excerpt

    # More failing activity: a company import and another verification, both refused.
    services.queue_company_import(connection)
    services.queue_verification(connection, services.new_correlation_id())
    wait_for(
        lambda: IntegrationLog.objects.filter(connection=connection, action="import.companies", outcome="error").exists()
        and IntegrationLog.objects.filter(connection=connection, action="connection.verify", outcome="error",
                                          http_method="").count() >= 2,
        "the import and the second verification to fail",
        worker_process,
    )
    # The beat's evaluation, here in the test process: nothing new to tell.
    health.evaluate_due()
    assert mail.outbox == []

    notices = IntegrationLog.objects.filter(connection=connection, action="connection.health",
                                            message__startswith="E-mailed")
    wait_for(notices.exists, "the notice to be logged", worker_process)
    time.sleep(1)  # anything a late task would still send
    assert notices.count() == 1
    assert notices.get().message.startswith("E-mailed 2 admins: [PSA hub] ConnectWise Manage connection of Acme IT: "
                                            "Credentials rejected")
    log = worker_process.log()
    assert len(SUBJECT.findall(log)) == 2, log[-3000:]  # one message to each admin
    assert log.count("To: alice@acme.example") == 1 and log.count("To: ada@acme.example") == 1
    assert "To: sid@acme.example" not in log
    connection.refresh_from_db()
    assert connection.health_state == "credentials_rejected"

    # The keys work again (new keys entered and verified): the admins hear it works again.
    psas.connectwise.restore()
    services.queue_verification(connection, services.new_correlation_id())
    wait_for(lambda: Connection.objects.filter(pk=connection.pk, health_state="healthy", health_notified="healthy").exists(),
             "Healthy again", worker_process)
    wait_for(lambda: re.search(r"connection of Acme IT\s+works\s+again", worker_process.log()), "the recovery notice",
             worker_process)
    assert len(SUBJECT.findall(worker_process.log())) == 2
