"""Re-encrypt every credential bundle that is not on the newest key of HUB_ENCRYPTION_KEYS.

Each row is rewritten in its own short transaction, re-read under a row lock, so the command
is safe to interrupt and to run twice; it ends by printing how many rows remain on each key.
"""

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from hub import vault
from integrations.models import Connection


class Command(BaseCommand):
    help = "Re-encrypt stored PSA credentials with the newest key in HUB_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        try:
            ring = vault.key_ring()
        except vault.VaultError as exc:
            raise CommandError(str(exc)) from None
        stale = Connection.objects.exclude(credentials="").exclude(credentials_key_id=ring.newest_id)
        rotated = failed = 0
        for pk in stale.values_list("pk", flat=True).iterator():
            with transaction.atomic():
                row = Connection.objects.select_for_update().filter(pk=pk).first()
                if row is None or not row.credentials or row.credentials_key_id == ring.newest_id:
                    continue  # removed meanwhile, or rotated by a concurrent run
                try:
                    row.credentials = vault.reencrypt(
                        row.credentials, account_id=row.account_id, connection_id=row.pk, ring=ring
                    )
                except vault.VaultError as exc:
                    failed += 1
                    self.stderr.write(f"connection {row.pk} (account {row.account_id}): {exc}")
                    continue
                row.credentials_key_id = ring.newest_id
                row.save(update_fields=["credentials", "credentials_key_id"])
                rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} credential bundle(s) with key {ring.newest_id!r}.")
        remaining = Counter(
            Connection.objects.exclude(credentials="").values_list("credentials_key_id", flat=True)
        )
        for key_id in sorted(remaining, key=lambda k: (k != ring.newest_id, k)):
            self.stdout.write(f"  key {key_id!r}: {remaining[key_id]} row(s)")
        if not remaining:
            self.stdout.write("  no stored credentials")
        if failed:
            raise CommandError(f"{failed} row(s) could not be decrypted; see above. Their credentials need re-entry.")
