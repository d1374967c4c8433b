"""PostgreSQL only: a trigram index for the logs page's free-text search.

The search is `message ILIKE '%words%'` (Django's icontains: UPPER(message) LIKE UPPER(...)),
which no B-tree can serve. A GIN trigram index on UPPER(message) can, so a search for rare words
reads only the rows that contain them instead of scanning an account's whole log (figures in
`make bench-logs`). integrations.logs decides when to use it (a bounded scan of the newest rows
first; see `_search_page`). A two-column GIN (account_id, message) with btree_gin was tried:
PostgreSQL never used its account part (it intersected with a B-tree on account_id instead),
so it cost an extension for nothing. Built CONCURRENTLY (this migration is not atomic) so that writers are not
blocked while it is built on a large table. SQLite, the embedded default, has no trigram
index: there the search scans the account's rows, which is fine at embedded sizes.
"""

from django.db import migrations

INDEX = "log_message_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        # pg_trgm is a "trusted" extension (PostgreSQL 13+): the database owner may create it.
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON integrations_integrationlog "
            "USING gin (UPPER(message) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("integrations", "0003_logs_and_health")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
