"""What other apps may react to without integrations importing them."""

from django.dispatch import Signal

# Sent after the integration (not billing only) is resumed: held work can go out now.
integration_resumed = Signal()  # kwargs: connection
# Sent after a tenant's company mapping is set: work waiting for it can go out now.
tenant_mapped = Signal()  # kwargs: account, tenant
# Sent after a connection is verified (connected): two-way sync registers its webhook.
connection_verified = Signal()  # kwargs: connection
# Sent just before a connection is deleted: two-way sync removes its webhook from the PSA.
connection_removing = Signal()  # kwargs: connection
