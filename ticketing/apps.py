from django.apps import AppConfig


class TicketingConfig(AppConfig):
    name = "ticketing"

    def ready(self) -> None:
        from integrations import signals
        from ticketing import services

        signals.integration_resumed.connect(
            lambda sender, connection, **kw: services.release_held(connection.account), weak=False,
            dispatch_uid="ticketing.release_held",
        )
        signals.tenant_mapped.connect(
            lambda sender, account, tenant, **kw: services.release_needing_mapping(account, tenant), weak=False,
            dispatch_uid="ticketing.release_needing_mapping",
        )
        # Two-way sync (ticketing/sync/registration.py): register the webhook/callback when the
        # connection is verified or the board is chosen; remove it with the integration.
        from django.db.models.signals import post_save

        from ticketing.sync import registration
        from ticketing.models import TicketingConfig as Config

        signals.connection_verified.connect(
            lambda sender, connection, **kw: registration.queue_registration(connection), weak=False,
            dispatch_uid="ticketing.status_sync.verified",
        )
        signals.connection_removing.connect(
            lambda sender, connection, **kw: registration.connection_removing(connection), weak=False,
            dispatch_uid="ticketing.status_sync.removing",
        )
        post_save.connect(
            lambda sender, instance, **kw: registration.config_saved(instance), sender=Config, weak=False,
            dispatch_uid="ticketing.status_sync.config_saved",
        )
