"""Logs and health: the action group column (backfilled), the error kind of failed actions,
keyset-friendly indexes ending in (created_at, id), and the connection's health fields."""

import django.db.models.deletion
from django.db import migrations, models


def backfill_action_group(apps, schema_editor):
    """One UPDATE per distinct action (a few dozen): portable and no row-by-row work."""
    IntegrationLog = apps.get_model("integrations", "IntegrationLog")
    actions = IntegrationLog.objects.filter(action_group="").values_list("action", flat=True).distinct()
    for action in list(actions):
        IntegrationLog.objects.filter(action_group="", action=action).update(action_group=(action or "").split(".", 1)[0][:16])


class Migration(migrations.Migration):

    dependencies = [
        ('hub', '0001_initial'),
        ('integrations', '0002_connection_details'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='integrationlog',
            name='log_account_action',
        ),
        migrations.RemoveIndex(
            model_name='integrationlog',
            name='log_account_outcome',
        ),
        migrations.RemoveIndex(
            model_name='integrationlog',
            name='log_account_tenant',
        ),
        migrations.RemoveIndex(
            model_name='integrationlog',
            name='log_created',
        ),
        migrations.AddField(
            model_name='connection',
            name='credential_expires_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='connection',
            name='expiry_warned_for',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='connection',
            name='health_checked_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='connection',
            name='health_error',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='connection',
            name='health_notified',
            field=models.CharField(blank=True, max_length=24),
        ),
        migrations.AddField(
            model_name='connection',
            name='health_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='connection',
            name='health_state',
            field=models.CharField(choices=[('healthy', 'Healthy'), ('degraded', 'Degraded'), ('broken', 'Broken'), ('credentials_rejected', 'Credentials rejected')], default='healthy', max_length=24),
        ),
        migrations.AddField(
            model_name='integrationlog',
            name='action_group',
            field=models.CharField(blank=True, editable=False, max_length=16),
        ),
        migrations.AddField(
            model_name='integrationlog',
            name='error_kind',
            field=models.CharField(blank=True, max_length=24),
        ),
        migrations.RunPython(backfill_action_group, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='integrationlog',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='integration_logs', to='hub.account'),
        ),
        migrations.AddIndex(
            model_name='integrationlog',
            index=models.Index(fields=['account', 'action_group', '-created_at', '-id'], name='log_account_group'),
        ),
        migrations.AddIndex(
            model_name='integrationlog',
            index=models.Index(fields=['account', 'outcome', '-created_at', '-id'], name='log_account_outcome'),
        ),
        migrations.AddIndex(
            model_name='integrationlog',
            index=models.Index(fields=['account', 'tenant', '-created_at', '-id'], name='log_account_tenant'),
        ),
        migrations.AddIndex(
            model_name='integrationlog',
            index=models.Index(fields=['account', 'http_status', '-created_at', '-id'], name='log_account_status'),
        ),
        migrations.AddIndex(
            model_name='integrationlog',
            index=models.Index(fields=['-created_at', '-id'], name='log_created'),
        ),
    ]
