"""The Ticketing settings form: built per PSA from ticketing.fields and filled from the
connection's cached picklists (integrations.services.picklist), never from the PSA itself.

The page and the API (PUT /api/v1/ticketing/config) validate with this one form, so a value
is accepted only when it is in the cached list it comes from, and errors name the field and
the fix. A status mapping may be saved incomplete: the page then says which statuses are
missing (seed 004's troubleshooting: "Ensure the status mapping covers all six statuses").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django import forms
from django.db import transaction
from django.utils import timezone

from hub.models import Account, Tenant
from integrations import picklists, registry
from integrations import services as integration_services
from integrations.models import Connection, Picklist, PsaCompany
from integrations.picklists import CachedList
from ticketing import services as ticketing_services
from ticketing.fields import VENDOR_TICKETING, VendorTicketing
from ticketing.models import SEVERITIES, STATUSES, Incident, TicketingConfig

# Seed 004's words for the six statuses and four severities.
STATUS_HELP = {
    "Open": "Ticket requires action and is ready to be worked on",
    "Pending": "Ticket is waiting for a response or external action",
    "Done": "Ticket has been resolved and completed",
    "Snoozed": "Ticket is temporarily deferred to a later date",
    "Canceled": "Ticket has been canceled and will not be actioned",
    "Dismissed": "Ticket has been reviewed and intentionally dismissed",
}
SEVERITY_HELP = {
    "Critical": "Immediate action required",
    "High": "Should be addressed soon",
    "Medium": "Should be addressed",
    "Low": "Informational",
}
# What the board/queue is called in running text.
BOARD_NOUN = {"connectwise": "board", "autotask": "queue", "halo": "ticket type"}
# ConnectWise: the picklist whose items say whether a board has a default team (seed 000 step 3.5).
DEFAULT_TEAM_KIND = {"connectwise": "teams"}
NO_DEFAULT_TEAM = (
    "This board has no Default Team: ticket creation will fail with “InvalidObject: ticket object is invalid - "
    "Cannot find default team for board specified (field: board)”. In ConnectWise go to System > Setup Tables > "
    "Service Board, open the board and set an active Default Team."
)
REOPEN_MAX_HOURS = 24 * 365
TEST_TICKET_TITLE = "Test ticket from the PSA hub"


def psa_name(connection: Connection) -> str:
    return registry.get(connection.vendor).name


def html_name(spec_name: str) -> str:
    """ "extra.issue_type" -> "extra_issue_type" (a form field name)."""
    return spec_name.replace(".", "_")


def board_change_notice(vendor: str) -> str:
    noun = BOARD_NOUN.get(vendor, "board")
    if VENDOR_TICKETING[vendor].statuses_parent:
        return (
            f"Each {noun} has its own statuses: map them again. Existing tickets stay on their {noun}; "
            "the change applies to new tickets."
        )
    return f"Existing tickets stay in their {noun}; the change applies to new tickets."


@dataclass(kw_only=True)
class ChoiceRow(CachedList):
    """One select of the page, with the cached list that fills it."""

    name: str  # form field name: "board_id", "status_Open", "extra_issue_type_id"
    api: str  # its name in the API and where it is stored: "board_id", "status_map.Open", "extra.issue_type_id"
    label: str
    group: str  # board | statuses | priorities | fields
    parent: str = ""  # form field name of the parent
    parent_label: str = ""
    required: bool = False
    help: str = ""
    short_label: str = ""  # "Open" in the status table
    bound: object = None  # the BoundField, for the template


class TicketingForm(forms.Form):
    """Everything on the Ticketing page for the connection's PSA.

    Unbound, it shows `initial` (the saved config by default). With `drop_stale` (True, or the
    names it applies to), values of lists that depend on another choice (a board's statuses...)
    whose parent is no longer the saved one, and that are not in the new parent's cached list,
    are cleared: used when the board changes on the page or through the API.
    """

    def __init__(
        self,
        data=None,
        *,
        connection: Connection,
        config: TicketingConfig | None = None,
        initial: dict | None = None,
        drop_stale: bool | set = False,
        read_only: bool = False,
        queue_refresh: bool = True,
    ):
        self.connection = connection
        self.vendor = connection.vendor
        self.spec: VendorTicketing = VENDOR_TICKETING[self.vendor]
        self.psa = psa_name(connection)
        # A config saved for another PSA (the account switched) is not carried over.
        self.config = config if config is not None and config.vendor == self.vendor else None
        self.other_vendor_config = config is not None and config.vendor != self.vendor
        initial = dict(initial) if initial is not None else config_values(self.config, self.spec)
        super().__init__(data, initial=initial)
        self.queue_refresh = queue_refresh
        self.read_only = read_only
        self._entries: dict[tuple[str, str], Picklist | None] = {}
        self.rows: list[ChoiceRow] = []
        specs = self._row_specs()
        self._parents = {row.parent for row in specs if row.parent}
        for row in specs:
            self._fill(row, drop_stale)
            self.rows.append(row)
            self.fields[row.name] = self._select(row)
        self.fields["default_company_id"] = forms.CharField(
            required=False, label="Default company",
            help_text="Tickets for tenants not mapped to a company go here. Leave empty to hold them as "
            "“needs mapping” until they are mapped.",
            widget=forms.Select(choices=self._company_choices()),
        )
        self.fields["reopen_within_hours"] = forms.IntegerField(
            min_value=0, max_value=REOPEN_MAX_HOURS, label="Reopen a closed ticket when the incident recurs within (hours)",
            help_text="A repeated incident whose ticket was closed less than this many hours ago reopens that ticket; "
            "later ones open a new ticket. 0 always opens a new ticket.",
            error_messages={
                "required": "Reopen within: enter a number of hours (24 is usual; 0 always opens a new ticket).",
                "min_value": "Reopen within: enter 0 or more hours.",
                "max_value": f"Reopen within: enter at most {REOPEN_MAX_HOURS} hours (a year).",
                "invalid": "Reopen within: enter a whole number of hours.",
            },
            widget=forms.NumberInput(attrs={"min": 0, "max": REOPEN_MAX_HOURS}),
        )
        for row in self.rows:
            row.bound = self[row.name]
        if self.initial.get("reopen_within_hours") in (None, ""):
            self.initial["reopen_within_hours"] = 24
        if read_only:
            for form_field in self.fields.values():
                form_field.widget.attrs["disabled"] = True

    # --- building -------------------------------------------------------------------------------

    def _row_specs(self) -> list[ChoiceRow]:
        spec = self.spec
        board = spec.board
        rows = [ChoiceRow(name=board.name, api=board.name, label=board.label, kind=board.kind, group="board",
                          required=board.required, help=board.help)]
        statuses = (["new"] if spec.new_status else []) + STATUSES
        for status in statuses:
            label = "Status for new tickets" if status == "new" else f"Status for {status}"
            help_text = (
                "The status a ticket is created with; empty uses the status mapped for Open." if status == "new"
                else STATUS_HELP[status]
            )
            rows.append(ChoiceRow(
                name=f"status_{status}", api=f"status_map.{status}", label=label, kind=spec.statuses_kind,
                group="statuses", parent=html_name(spec.statuses_parent), help=help_text,
                short_label="New tickets" if status == "new" else status,
            ))
        for severity in SEVERITIES:
            rows.append(ChoiceRow(
                name=f"priority_{severity}", api=f"priority_map.{severity}", label=f"Priority for {severity}",
                kind=spec.priorities_kind, group="priorities", parent=html_name(spec.priorities_parent),
                help=SEVERITY_HELP[severity], short_label=severity,
            ))
        if spec.default_priority:
            rows.append(ChoiceRow(
                name="default_priority_id", api="default_priority_id", label="Default priority",
                kind=spec.priorities_kind, group="priorities", parent=html_name(spec.priorities_parent),
                help="Applied to tickets whose severity has no priority mapped above.", short_label="Default",
            ))
        for vendor_field in spec.fields:
            rows.append(ChoiceRow(
                name=html_name(vendor_field.name), api=vendor_field.name, label=vendor_field.label, kind=vendor_field.kind,
                group="fields", parent=html_name(vendor_field.parent), required=vendor_field.required, help=vendor_field.help,
            ))
        labels = {row.name: row.label for row in rows}
        for row in rows:
            row.parent_label = labels.get(row.parent, "")
        return rows

    def value(self, name: str) -> str:
        """What the field holds now: the posted value when bound, else the initial one."""
        source = self.data if self.is_bound else self.initial
        value = source.get(name, "")
        return "" if value is None else str(value).strip()

    def _entry(self, kind: str, parent_id: str) -> Picklist | None:
        key = (kind, parent_id)
        if key not in self._entries:
            self._entries[key] = picklists.entry_for(self.connection, kind, parent_id, queue_refresh=self.queue_refresh)
        return self._entries[key]

    def _fill(self, row: ChoiceRow, drop_stale: bool) -> None:
        if row.parent:
            row.parent_id = self.value(row.parent)
            if not row.parent_id:
                row.state = "needs_parent"
                return
        row.fill(self._entry(row.kind, row.parent_id))
        if row.ready and self._drops(row, drop_stale) and self.value(row.name) and self.value(row.name) not in row.ids:
            self._set_initial(row.name, "")

    def _drops(self, row: ChoiceRow, drop_stale) -> bool:
        """Whether a value not in the list is cleared: only for lists whose parent was changed
        from the saved one (a board's statuses after the board changed)."""
        if not row.parent or not drop_stale:
            return False
        if drop_stale is not True and row.name not in drop_stale:
            return False
        saved_parent = config_values(self.config, self.spec).get(row.parent, "") if self.config is not None else ""
        return row.parent_id != saved_parent

    def _set_initial(self, name: str, value: str) -> None:
        if self.is_bound:
            data = self.data.copy()
            data[name] = value
            self.data = data
        else:
            self.initial[name] = value

    def _select(self, row: ChoiceRow) -> forms.Field:
        choices = [("", "—")] + [(str(item["id"]), item["name"]) for item in row.items]
        current = self.value(row.name)
        if current and row.state == "ready" and current not in row.ids:
            choices.append((current, f"Unknown ({current}): not in {self.psa}'s list"))
        elif current and row.state != "ready":
            choices.append((current, current))
        attrs = {"data-kind": row.kind}
        if row.name in self._parents:
            # The form listens for this change (templates/ticketing/settings.html): a listener on
            # the select itself is attached only after htmx settles a swap, so a quick second
            # change was lost.
            attrs["data-reloads-fields"] = "true"
        return forms.CharField(required=False, label=row.label, help_text=row.help, widget=forms.Select(choices=choices, attrs=attrs))

    def _company_choices(self) -> list[tuple[str, str]]:
        current = self.value("default_company_id")
        choices = [("", "No default company")]
        if current:
            choices.append((current, self.company_name(current) or f"Company {current}"))
        return choices

    def company_name(self, company_id: str) -> str:
        company = PsaCompany.objects.filter(connection=self.connection, company_id=company_id).first()
        if company is not None:
            return company.name
        if self.config is not None and self.config.default_company_id == company_id:
            return self.config.default_company_name
        return ""

    # --- what the page shows ---------------------------------------------------------------------

    @property
    def company_count(self) -> int:
        return PsaCompany.objects.filter(connection=self.connection, active=True).count()

    def group(self, name: str) -> list[ChoiceRow]:
        return [row for row in self.rows if row.group == name]

    @property
    def board_row(self) -> ChoiceRow:
        return self.rows[0]

    @property
    def status_rows(self) -> list[ChoiceRow]:
        return self.group("statuses")

    @property
    def priority_rows(self) -> list[ChoiceRow]:
        return self.group("priorities")

    @property
    def field_rows(self) -> list[ChoiceRow]:
        return self.group("fields")

    @property
    def polling(self) -> bool:
        """Whether the page should ask again: a list it shows is on its way from the PSA."""
        team = self.default_team
        return any(row.state == "loading" or row.refreshing for row in self.rows) or (team is not None and team["state"] == "loading")

    @property
    def board_noun(self) -> str:
        return BOARD_NOUN.get(self.vendor, "board")

    @property
    def missing_statuses(self) -> list[str]:
        return [row.short_label for row in self.status_rows if row.short_label in STATUSES and not self.value(row.name)]

    @property
    def missing_priorities(self) -> list[str]:
        if self.spec.default_priority and self.value("default_priority_id"):
            return []
        return [row.short_label for row in self.priority_rows if row.short_label in SEVERITIES and not self.value(row.name)]

    @property
    def board_changed(self) -> bool:
        saved = self.config.board_id if self.config is not None else ""
        return bool(saved) and self.value(self.board_row.name) != saved

    @property
    def board_change_notice(self) -> str:
        return board_change_notice(self.vendor) if self.board_changed else ""

    @property
    def default_team(self) -> dict | None:
        """ConnectWise: {"state": loading|error|ok|missing, "message"} for the chosen board."""
        if hasattr(self, "_default_team"):
            return self._default_team
        kind = DEFAULT_TEAM_KIND.get(self.vendor)
        board_id = self.value(self.board_row.name)
        result = None
        if kind and board_id:
            entry = self._entry(kind, board_id)
            if entry is None or entry.fetched_at is None:
                result = {"state": "error", "message": f"Could not check the board's Default Team: {entry.error}"} if entry is not None and entry.error \
                    else {"state": "loading", "message": "Checking the board's Default Team…"}
            elif any(item.get("active", True) and (item.get("extra") or {}).get("default") for item in entry.items):
                result = {"state": "ok", "message": ""}
            else:
                result = {"state": "missing", "message": NO_DEFAULT_TEAM}
        self._default_team = result
        return result

    @property
    def warnings(self) -> list[str]:
        team = self.default_team
        return [team["message"]] if team is not None and team["state"] == "missing" else []

    # --- validation -------------------------------------------------------------------------------

    def clean(self):
        cleaned = super().clean()
        for row in self.rows:
            value = (cleaned.get(row.name) or "").strip()
            cleaned[row.name] = value
            if not value:
                if row.required:
                    self.add_error(row.name, f"{row.label}: choose one; tickets are created there.")
                continue
            saved = self._saved(row)
            unchanged = saved and saved == value and (not row.parent or row.parent_id == self._saved_parent(row))
            if row.state == "needs_parent":
                self.add_error(row.name, f"{row.label}: choose the {row.parent_label} first; the list depends on it.")
            elif row.state == "loading":
                if not unchanged:
                    self.add_error(row.name, f"{row.label}: the list is still loading from {self.psa}; save again in a moment.")
            elif row.state == "error":
                if not unchanged:
                    self.add_error(row.name, f"{row.label}: the list could not be loaded from {self.psa} ({row.error}). "
                                             "Fix that, then Refresh lists.")
            elif value not in row.ids:
                where = f" of {row.parent_label} “{self._parent_name(row)}”" if row.parent else ""
                self.add_error(row.name, f"{row.label}: “{value}” is not in {self.psa}'s list{where}. Choose one from the list, "
                                         f"or Refresh lists if it was added in {self.psa} recently.")
        self._check_subtype(cleaned)
        company_id = (cleaned.get("default_company_id") or "").strip()
        cleaned["default_company_id"] = company_id
        if company_id and not PsaCompany.objects.filter(connection=self.connection, company_id=company_id).exists():
            saved_company = self.config.default_company_id if self.config is not None else ""
            if company_id != saved_company:
                self.add_error("default_company_id", f"Default company: “{company_id}” is not among the customers imported from "
                                                     f"{self.psa}. Import customers under Integrations, then choose it.")
        return cleaned

    def _check_subtype(self, cleaned: dict) -> None:
        """ConnectWise subtypes belong to some of the board's types."""
        rows = {row.name: row for row in self.rows}
        if "subtype_id" not in rows or "type_id" not in rows or self.errors.get("subtype_id"):
            return
        subtype = rows["subtype_id"].item(cleaned.get("subtype_id", ""))
        type_id = cleaned.get("type_id", "")
        type_ids = [str(t) for t in (subtype or {}).get("extra", {}).get("type_ids") or []]
        if subtype and type_id and type_ids and type_id not in type_ids:
            type_name = rows["type_id"].name_of(type_id) or type_id
            self.add_error("subtype_id", f"Subtype: “{subtype['name']}” is not a subtype of Type “{type_name}” on this board. "
                                         "Choose one of that type's subtypes, or another type.")

    def _saved(self, row: ChoiceRow) -> str:
        return config_values(self.config, self.spec).get(row.name, "") if self.config is not None else ""

    def _saved_parent(self, row: ChoiceRow) -> str:
        return config_values(self.config, self.spec).get(row.parent, "") if self.config is not None else ""

    def _parent_name(self, row: ChoiceRow) -> str:
        parent = next((r for r in self.rows if r.name == row.parent), None)
        if parent is None:
            return row.parent_id
        return parent.name_of(row.parent_id) or row.parent_id

    def api_errors(self) -> dict[str, list[str]]:
        names = {row.name: row.api for row in self.rows}
        errors = {}
        for name, messages in self.errors.items():
            errors[names.get(name, "non_field_errors" if name == "__all__" else name)] = list(messages)
        return errors

    # --- saving ----------------------------------------------------------------------------------

    def save(self, account: Account) -> tuple[TicketingConfig, int]:
        """Store the settings; returns (config, incidents released because a default company is set)."""
        cleaned = self.cleaned_data
        with transaction.atomic():
            config = TicketingConfig.objects.select_for_update().filter(account=account).first()
            same_vendor = config is not None and config.vendor == self.vendor
            if config is None:
                config = TicketingConfig(account=account)
            if not same_vendor:
                for name in ("board_id", "board_name", "default_priority_id", "type_id", "subtype_id", "item_id",
                             "source_id", "team_id", "default_company_id", "default_company_name"):
                    setattr(config, name, "")
                config.status_map, config.priority_map, config.extra = {}, {}, {}
            previous_board_id, previous_board = config.board_id, config.board_name or config.board_id
            previous_company = config.default_company_id
            config.vendor = self.vendor
            status_map, priority_map, extra = {}, {}, dict(config.extra)
            for row in self.rows:
                value = cleaned.get(row.name, "")
                if row.api.startswith("status_map."):
                    if value:
                        status_map[row.api.split(".", 1)[1]] = value
                elif row.api.startswith("priority_map."):
                    if value:
                        priority_map[row.api.split(".", 1)[1]] = value
                elif row.api.startswith("extra."):
                    key = row.api.split(".", 1)[1]
                    if value:
                        extra[key] = value
                    else:
                        extra.pop(key, None)
                else:
                    setattr(config, row.api, value)
            # The name from the cached list; while that list reloads, an unchanged board keeps its name.
            kept = config.board_name if config.board_id == previous_board_id else ""
            config.board_name = self.board_row.name_of(config.board_id) or kept
            config.status_map, config.priority_map, config.extra = status_map, priority_map, extra
            company_id = cleaned["default_company_id"]
            config.default_company_id = company_id
            config.default_company_name = self.company_name(company_id) if company_id else ""
            config.reopen_within_hours = cleaned["reopen_within_hours"]
            config.save()
            integration_services.log_action(account, "ticketing.config", self._summary(config, previous_board),
                                            connection=self.connection)
        released = 0
        if config.default_company_id and config.default_company_id != previous_company:
            released = ticketing_services.release_needing_mapping(account)
        return config, released

    def _summary(self, config: TicketingConfig, previous_board: str) -> str:
        label = self.spec.board.label
        text = f"Ticketing settings saved: {label} “{config.board_name or config.board_id or '—'}”"
        current = config.board_name or config.board_id
        if previous_board and current and previous_board != current:
            text += f" (was “{previous_board}”; new tickets only, existing tickets stay)"
        missing = config.missing_statuses()
        text += f"; statuses not mapped: {', '.join(missing)}." if missing else "; every status mapped."
        return text


def config_values(config: TicketingConfig | None, spec: VendorTicketing) -> dict:
    """The form's values for a saved config (empty when there is none)."""
    values: dict = {"reopen_within_hours": 24}
    if config is None:
        return values
    values["board_id"] = config.board_id
    for status in STATUSES + ["new"]:
        values[f"status_{status}"] = config.status_map.get(status, "")
    for severity in SEVERITIES:
        values[f"priority_{severity}"] = config.priority_map.get(severity, "")
    values["default_priority_id"] = config.default_priority_id
    for vendor_field in spec.fields:
        if vendor_field.name.startswith("extra."):
            values[html_name(vendor_field.name)] = config.extra.get(vendor_field.name.split(".", 1)[1], "")
        else:
            values[vendor_field.name] = getattr(config, vendor_field.name)
    values["default_company_id"] = config.default_company_id
    values["reopen_within_hours"] = config.reopen_within_hours
    return values


def config_for(account: Account) -> TicketingConfig | None:
    return TicketingConfig.objects.for_account(account).first()


# --- the routing preview ------------------------------------------------------------------------------


@dataclass
class Preview:
    """Where a ticket for a tenant and severity would land, or why it would not."""

    tenant: Tenant
    severity: str
    ready: bool
    state: str = ""
    message: str = ""
    company_id: str = ""
    company_name: str = ""
    company_source: str = ""  # mapping | default
    board_label: str = ""
    board_id: str = ""
    board_name: str = ""
    status_id: str = ""
    status_name: str = ""
    priority_id: str = ""
    priority_name: str = ""
    type_label: str = ""
    type_id: str = ""
    type_name: str = ""
    note: str = ""  # e.g. the integration is paused


def _cached_name(connection: Connection, kind: str, parent_id: str, item_id: str) -> str:
    if not item_id:
        return ""
    entry = Picklist.objects.filter(connection=connection, kind=kind, parent_id=parent_id).first()
    for item in (entry.items if entry is not None else []):
        if str(item.get("id")) == str(item_id):
            return item.get("name", "")
    return ""


def preview_route(connection: Connection, config: TicketingConfig | None, tenant: Tenant, severity: str) -> Preview:
    """services.route() for a new ticket, with the names from the cached lists. Writes nothing."""
    spec = VENDOR_TICKETING[connection.vendor]
    preview = Preview(tenant=tenant, severity=severity, ready=False, board_label=spec.board.label)
    if connection.paused:
        preview.note = "The integration is paused: incidents are held and sent when it is resumed."
    if config is None or config.vendor != connection.vendor:
        preview.state = Incident.Sync.FAILED
        preview.message = "Ticketing is not set up: choose the board or queue on the Ticketing page."
        return preview
    try:
        route = ticketing_services.route(config, tenant, severity, "Open", new=True)
    except ticketing_services.NotReady as exc:
        preview.state, preview.message = exc.state, exc.message
        return preview
    values = {**config_values(config, spec), "board_id": route.board_id}

    def parent_of(spec_parent: str) -> str:
        return values.get(html_name(spec_parent), "") if spec_parent else ""

    type_spec = next((f for f in spec.fields if f.name == "type_id"), None)
    preview.ready = True
    preview.company_id, preview.company_name, preview.company_source = route.company_id, route.company_name, route.company_source
    preview.board_id = route.board_id
    preview.board_name = route.board_name or _cached_name(connection, spec.board.kind, "", route.board_id)
    preview.status_id = route.status_id
    preview.status_name = _cached_name(connection, spec.statuses_kind, parent_of(spec.statuses_parent), route.status_id)
    preview.priority_id = route.priority_id
    preview.priority_name = _cached_name(connection, spec.priorities_kind, parent_of(spec.priorities_parent), route.priority_id)
    preview.type_id = route.type_id
    if type_spec is not None:
        preview.type_label = type_spec.label
        preview.type_name = _cached_name(connection, type_spec.kind, parent_of(type_spec.parent), route.type_id)
    return preview


def send_test_ticket(account: Account, connection: Connection, config: TicketingConfig | None, tenant: Tenant, severity: str):
    """A real incident for `tenant` (ticket made by the worker), after the preview says it can
    land. Returns (incident, None) or (None, the reason it would not)."""
    if connection.paused:
        return None, "The integration is paused: resume it under Integrations to send a test ticket."
    preview = preview_route(connection, config, tenant, severity)
    if not preview.ready:
        return None, preview.message
    stamp = timezone.now()
    incident, _ = ticketing_services.accept_incident(account, tenant, {
        "title": TEST_TICKET_TITLE,
        "details": f"Sent from the Ticketing page at {stamp:%Y-%m-%d %H:%M} UTC to check where tickets land. "
                   "You can close it.",
        "severity": severity,
        "status": "Open",
        "dedupe_key": f"hub-test-ticket-{uuid.uuid4().hex}",
    })
    return incident, None
