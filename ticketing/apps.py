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
