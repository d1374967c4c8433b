"""The Billing pages' forms, filled from the connection's cached picklists (never from the PSA).

Per vendor (VENDOR_BILLING) the hub product maps to a PSA product (ConnectWise Catalog Item,
Autotask Service, Halo Item) and each tenant's units go to:

- ConnectWise: an Agreement of the tenant's mapped company (picklist "agreements", per company);
- Autotask: the Customer (Autotask Company, by default the tenant's company mapping), then one of
  its Recurring Service contracts ("contracts", per company), then the Service line item within
  it ("contract_services", per contract; its extra["service_id"] becomes the mapping's product);
- Halo: the Software Licence of the mapped client ("licences", per client), or "create it".

A value is accepted only when it is in the cached list it comes from (or is the value already
saved); lists not cached yet show "Loading from <PSA>…" and the page polls until they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django import forms
from django.urls import reverse
from django.utils import timezone

from billing import services
from billing.models import PRODUCT_KEY_PATTERN, BillingMapping, BillingSettings, Mode, ProductMapping
from hub.models import Account, Tenant
from integrations import registry
from integrations.models import CompanyMapping, Connection, PsaCompany
from integrations.picklists import CachedList, cached_list

@dataclass(frozen=True)
class VendorBilling:
    """What billing is called and where its lists come from, per PSA."""

    product_kind: str
    product_label: str  # "Catalog Item"
    company_label: str
    company_choice: bool  # the operator picks the company (Autotask's "Customer")
    agreement_kind: str = ""
    agreement_label: str = ""
    line_kind: str = ""
    line_label: str = ""
    line_parent: str = ""  # "agreement" | "company"
    overrides: bool = False  # invoice description and unit price/cost are sent (ConnectWise additions)
    line_help: str = ""


VENDOR_BILLING = {
    "connectwise": VendorBilling(
        product_kind="catalog_items", product_label="Catalog Item", company_label="Company", company_choice=False,
        agreement_kind="agreements", agreement_label="Agreement", overrides=True,
    ),
    "autotask": VendorBilling(
        product_kind="services", product_label="Service", company_label="Customer (Autotask Company)",
        company_choice=True, agreement_kind="contracts", agreement_label="Contract", line_kind="contract_services",
        line_label="Service line item", line_parent="agreement",
        line_help="The contract's service line that carries the units. Units change through a contract service "
        "adjustment for the difference, effective today.",
    ),
    "halo": VendorBilling(
        product_kind="items", product_label="Item", company_label="Client", company_choice=False,
        line_kind="licences", line_label="Software Licence", line_parent="company",
        line_help="The client's software licence whose count the hub keeps equal to the tenant's units.",
    ),
}


def psa_name(connection: Connection) -> str:
    return registry.get(connection.vendor).name


def spec_for(connection: Connection) -> VendorBilling:
    return VENDOR_BILLING[connection.vendor]


# --- cached lists ----------------------------------------------------------------------------------


def _select(choices, attrs=None) -> forms.Select:
    return forms.Select(choices=choices, attrs=attrs or {})


# --- settings ---------------------------------------------------------------------------------------


class BillingSettingsForm(forms.ModelForm):
    """Mode, guardrails, schedule and auto sync (admins). Saved through services.update_settings."""

    class Meta:
        model = BillingSettings
        fields = [
            "mode", "max_change_percent", "max_change_units", "schedule", "time_of_day", "day_of_month", "auto_sync",
            "auto_sync_delay_minutes",
        ]  # fmt: skip
        labels = {
            "mode": "Mode",
            "max_change_percent": "Hold a change larger than (%)",
            "max_change_units": "Hold a change larger than (units)",
            "schedule": "Scheduled sync",
            "time_of_day": "Time of day",
            "day_of_month": "Day of the month (monthly)",
            "auto_sync": "Auto sync: a usage change syncs that tenant within minutes",
            "auto_sync_delay_minutes": "Auto sync delay (minutes)",
        }
        help_texts = {
            "mode": "Per tenant, a mapping can override it.",
            "max_change_percent": "In automatic mode a line changing by more than this is held for approval (a drop to "
            "zero always is).",
            "max_change_units": "In automatic mode a line changing by more than this many units is held for approval.",
            "day_of_month": "1–28, so that every month has it.",
            "auto_sync_delay_minutes": "Further changes within the delay join the same sync.",
        }
        widgets = {
            "mode": forms.RadioSelect,
            "time_of_day": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "max_change_percent": forms.NumberInput(attrs={"min": 0, "max": 10000}),
            "max_change_units": forms.NumberInput(attrs={"min": 0}),
            "day_of_month": forms.NumberInput(attrs={"min": 1, "max": 28}),
            "auto_sync_delay_minutes": forms.NumberInput(attrs={"min": 1, "max": 60}),
        }

    def __init__(self, *args, read_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_only = read_only
        if read_only:
            for form_field in self.fields.values():
                form_field.disabled = True

    def changes(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


# --- products ---------------------------------------------------------------------------------------


class ProductForm(forms.Form):
    """A hub product (users, domains, devices, GB...) and the PSA product its units are billed as."""

    key = forms.RegexField(
        PRODUCT_KEY_PATTERN, max_length=40, label="Hub product key",
        help_text="What the host product reports usage for: users, domains, devices, gb…",
        error_messages={"invalid": "Use lower-case letters, digits, '-' and '_' (e.g. users).",
                        "required": "Enter the product key the host product reports usage for, e.g. users."},
    )  # fmt: skip
    name = forms.CharField(max_length=100, required=False, label="Name", help_text="Shown on these pages, e.g. Users.")
    psa_product_id = forms.CharField(max_length=64, required=False)
    invoice_description = forms.CharField(
        max_length=1000, required=False, label="Invoice description",
        help_text="Optional: the description of the agreement additions the hub creates.",
    )  # fmt: skip
    unit_price = forms.DecimalField(max_digits=12, decimal_places=4, min_value=0, required=False, label="Unit price",
                                    help_text="Optional: overrides the catalog item's price on new additions.")  # fmt: skip
    unit_cost = forms.DecimalField(max_digits=12, decimal_places=4, min_value=0, required=False, label="Unit cost",
                                   help_text="Optional: overrides the catalog item's cost on new additions.")  # fmt: skip

    def __init__(self, data=None, *, account: Account, connection: Connection, catalog: CachedList,
                 product: ProductMapping | None = None, read_only: bool = False):  # fmt: skip
        self.account, self.connection, self.product, self.catalog = account, connection, product, catalog
        self.spec = spec_for(connection)
        self.psa = psa_name(connection)
        prefix = f"product-{product.pk}" if product is not None else "new-product"
        initial = {}
        if product is not None:
            initial = {
                "key": product.key, "name": product.name, "invoice_description": product.invoice_description,
                "unit_price": product.unit_price, "unit_cost": product.unit_cost,
                "psa_product_id": product.psa_product_id if product.vendor in ("", connection.vendor) else "",
            }  # fmt: skip
        super().__init__(data, initial=initial, prefix=prefix)
        self.read_only = read_only
        field_ = self.fields["psa_product_id"]
        field_.label = f"{self.psa} {self.spec.product_label}"
        field_.help_text = f"The {self.psa} {self.spec.product_label.lower()} this product's units are billed as."
        field_.widget = _select(self._product_choices(), {"data-kind": catalog.kind})
        if product is not None:
            self.fields["key"].disabled = True
            self.fields["key"].help_text = "Usage is reported under this key, so it cannot change."
        if not self.spec.overrides:
            for name in ("invoice_description", "unit_price", "unit_cost"):
                del self.fields[name]
        if read_only:
            for form_field in self.fields.values():
                form_field.disabled = True

    @property
    def other_vendor(self) -> bool:
        return bool(self.product and self.product.psa_product_id and self.product.vendor
                    and self.product.vendor != self.connection.vendor)  # fmt: skip

    def _saved_id(self) -> str:
        if self.product is None or self.other_vendor:
            return ""
        return self.product.psa_product_id

    def current_id(self) -> str:
        if self.is_bound:
            return (self.data.get(self.add_prefix("psa_product_id")) or "").strip()
        return str(self.initial.get("psa_product_id") or "")

    def _product_choices(self) -> list[tuple[str, str]]:
        choices = [("", f"— choose the {self.spec.product_label.lower()} —")]
        for item in self.catalog.items:
            choices.append((str(item["id"]), item["name"]))
        current = self.current_id()
        if current and current not in self.catalog.ids:
            saved_name = self.product.psa_product_name if self.product is not None else ""
            if self.catalog.ready:
                choices.append((current, f"{saved_name or current}: not in {self.psa}'s list (inactive or deleted?)"))
            else:
                choices.append((current, saved_name or current))
        return choices

    def clean_key(self) -> str:
        if self.product is not None:
            return self.product.key
        key = self.cleaned_data["key"]
        if ProductMapping.objects.for_account(self.account).filter(key=key).exists():
            raise forms.ValidationError(f"A product “{key}” already exists: change that one instead.")
        return key

    def clean_psa_product_id(self) -> str:
        value = (self.cleaned_data.get("psa_product_id") or "").strip()
        if not value or value == self._saved_id():
            return value
        if self.catalog.ready and value not in self.catalog.ids:
            raise forms.ValidationError(
                f"Not in {self.psa}'s list of {self.spec.product_label.lower()}s: choose one from the list "
                "(Refresh lists if it is new)."
            )
        if not self.catalog.ready:
            raise forms.ValidationError(
                f"The {self.spec.product_label.lower()}s are still loading from {self.psa}: choose once they have loaded."
            )
        return value

    def save(self, *, by: str = "") -> ProductMapping:
        data = self.cleaned_data
        psa_id = data.get("psa_product_id", "")
        fields = {"name": data.get("name", ""), "psa_product_id": psa_id}
        if psa_id and psa_id == self._saved_id():
            fields["psa_product_name"] = self.catalog.name_of(psa_id) or self.product.psa_product_name
        else:
            fields["psa_product_name"] = self.catalog.name_of(psa_id) if psa_id else ""
        if self.spec.overrides:
            fields.update(invoice_description=data.get("invoice_description", ""), unit_price=data.get("unit_price"),
                          unit_cost=data.get("unit_cost"))  # fmt: skip
        return services.save_product(self.account, data["key"], fields, product=self.product)


# --- a tenant's mapping for one product ---------------------------------------------------------------


MODE_CHOICES = [("", "The account's mode"), *Mode.choices]


class TenantMappingForm(forms.Form):
    """Where one tenant's units of one product go, with dependent selects (company → agreement/
    contract → service line / licence). Field names carry the prefix p<product id>."""

    company_id = forms.CharField(max_length=64, required=False)
    agreement_id = forms.CharField(max_length=64, required=False)
    line_id = forms.CharField(max_length=64, required=False)
    mode = forms.ChoiceField(choices=MODE_CHOICES, required=False, label="Mode for this tenant",
                             help_text="Overrides the account's mode for this tenant and product.")  # fmt: skip

    def __init__(self, data=None, *, connection: Connection, tenant: Tenant, product: ProductMapping,
                 mapping: BillingMapping | None, company: CompanyMapping | None, read_only: bool = False,
                 drop_stale: bool = False, queue_refresh: bool = True, today: date | None = None):  # fmt: skip
        self.connection, self.tenant, self.product, self.mapping, self.company = connection, tenant, product, mapping, company
        self.spec = spec_for(connection)
        self.psa = psa_name(connection)
        self.read_only = read_only
        self.today = today or timezone.localdate()
        saved_company = mapping.company_id if mapping else ""
        mapped_company = company.company_id if company else ""
        # Autotask: the customer chosen for billing; the others follow the tenant's company mapping.
        default_company = (saved_company or mapped_company) if self.spec.company_choice else (mapped_company or saved_company)
        initial = {
            "company_id": default_company,
            "agreement_id": mapping.agreement_id if mapping else "",
            "line_id": mapping.line_id if mapping else "",
            "mode": mapping.mode if mapping else "",
        }
        super().__init__(data, initial=initial, prefix=f"p{product.pk}")
        self.chosen_company_id = self.value("company_id") if self.spec.company_choice else initial["company_id"]
        self.agreements = self.lines = None
        if self.spec.agreement_kind:
            self.agreements = cached_list(connection, self.spec.agreement_kind, self.chosen_company_id, needs_parent=True,
                                          queue_refresh=queue_refresh)  # fmt: skip
            if drop_stale and self.agreements.ready and self.value("agreement_id") not in self.agreements.ids:
                self._set("agreement_id", "")
        if self.spec.line_kind:
            parent = self.value("agreement_id") if self.spec.line_parent == "agreement" else self.chosen_company_id
            self.lines = cached_list(connection, self.spec.line_kind, parent, needs_parent=True, queue_refresh=queue_refresh)
            if drop_stale and self.lines.ready and self.value("line_id") not in self.lines.ids:
                self._set("line_id", "")
        fields_url = reverse("billing_tenant_fields", args=[tenant.pk, product.pk])
        target = f"#mapping-fields-{product.pk}"
        dependent = {"hx-get": fields_url, "hx-trigger": "change", "hx-target": target, "hx-swap": "outerHTML",
                     "hx-include": target}  # fmt: skip
        self.fields["company_id"].label = self.spec.company_label
        self.fields["company_id"].widget = _select(self._company_choices(), dependent if self.spec.company_choice else {})
        if self.spec.agreement_kind:
            self.fields["agreement_id"].label = f"{self.psa} {self.spec.agreement_label}"
            attrs = dependent if self.spec.line_parent == "agreement" else {}
            self.fields["agreement_id"].widget = _select(self._agreement_choices(), attrs)
        else:
            del self.fields["agreement_id"]
        if self.spec.line_kind:
            self.fields["line_id"].label = f"{self.spec.line_label}"
            self.fields["line_id"].help_text = self.spec.line_help
            self.fields["line_id"].widget = _select(self._line_choices())
        else:
            del self.fields["line_id"]
        if read_only:
            for form_field in self.fields.values():
                form_field.disabled = True

    # --- values ------------------------------------------------------------------------------------

    def value(self, name: str) -> str:
        if self.is_bound:
            value = self.data.get(self.add_prefix(name), None)
            if value is None:  # not sent (a disabled or absent field): the saved value
                value = self.initial.get(name, "")
        else:
            value = self.initial.get(name, "")
        return "" if value is None else str(value).strip()

    def _set(self, name: str, value: str) -> None:
        if self.is_bound:
            data = self.data.copy()
            data[self.add_prefix(name)] = value
            self.data = data
        else:
            self.initial[name] = value

    @property
    def polling(self) -> bool:
        return any(lst is not None and lst.waiting for lst in (self.agreements, self.lines))

    @property
    def lists(self) -> list[CachedList]:
        return [lst for lst in (self.agreements, self.lines) if lst is not None]

    # --- choices -----------------------------------------------------------------------------------

    def company_name(self, company_id: str) -> str:
        if not company_id:
            return ""
        if self.company is not None and self.company.company_id == company_id and self.company.company_name:
            return self.company.company_name
        if self.mapping is not None and self.mapping.company_id == company_id and self.mapping.company_name:
            return self.mapping.company_name
        found = PsaCompany.objects.filter(connection=self.connection, company_id=company_id).first()
        return found.name if found else ""

    def _company_choices(self) -> list[tuple[str, str]]:
        choices = [("", f"— choose the {self.spec.company_label.split(' (')[0].lower()} —")]
        seen = set()
        for company_id in (self.chosen_company_id, self.company.company_id if self.company else ""):
            if company_id and company_id not in seen:
                seen.add(company_id)
                label = self.company_name(company_id) or f"Company {company_id}"
                if self.company is not None and company_id == self.company.company_id:
                    label += " (the tenant's company mapping)"
                choices.append((company_id, label))
        return choices

    def contract_warning(self, item: dict | None) -> str:
        """Autotask: what seed 001 says will stop billing on this contract, said before any sync."""
        if not item or self.connection.vendor != "autotask":
            return ""
        extra = item.get("extra") or {}
        start, end = extra.get("start_date") or "", extra.get("end_date") or ""
        today = self.today.isoformat()
        if start and start > today:
            return f"Starts on {start}, in the future: billing cannot be synced until the contract period has begun."
        if end and end < today:
            return f"Ended on {end}: billing cannot be synced to an expired contract."
        return ""

    def _agreement_label(self, item: dict) -> str:
        extra = item.get("extra") or {}
        label = item["name"] or f"#{item['id']}"
        if self.connection.vendor == "autotask":
            number = extra.get("contract_number")
            dates = " – ".join(d for d in (extra.get("start_date") or "", extra.get("end_date") or "") if d)
            label += "".join(f" · {part}" for part in (number, dates) if part)
            warning = self.contract_warning(item)
            if warning:
                label += " (starts in the future)" if warning.startswith("Starts") else " (expired)"
        elif extra.get("type"):
            label += f" · {extra['type']}"
        return label

    def _agreement_choices(self) -> list[tuple[str, str]]:
        lst = self.agreements
        noun = self.spec.agreement_label.lower()
        choices = [("", f"— choose the {noun} —")]
        choices += [(str(item["id"]), self._agreement_label(item)) for item in lst.items]
        current = self.value("agreement_id")
        if current and current not in lst.ids:
            saved = self.mapping.agreement_name if self.mapping is not None and self.mapping.agreement_id == current else ""
            if lst.ready:
                choices.append((current, f"{saved or current}: not among the company's {noun}s in {self.psa}"))
            else:
                choices.append((current, saved or current))
        return choices

    def _line_label(self, item: dict) -> str:
        extra = item.get("extra") or {}
        label = item["name"] or f"#{item['id']}"
        mine = self.product.psa_product_id
        if self.connection.vendor == "autotask":
            if extra.get("service_id") and str(extra["service_id"]) == str(mine):
                label += f" (this product's {self.spec.product_label})"
        elif self.connection.vendor == "halo":
            label += f" · count {extra.get('count', 0)}"
            if extra.get("item_id") and str(extra["item_id"]) == str(mine):
                label += " (this product's item)"
        return label

    def _line_choices(self) -> list[tuple[str, str]]:
        lst = self.lines
        product_name = self.product.psa_product_name or self.product.psa_product_id
        if self.connection.vendor == "autotask":
            blank = (f"The product's Service ({product_name}): added to the contract on the first sync"
                     if self.product.psa_product_id else "— choose the service line item —")  # fmt: skip
        else:
            blank = (f"Create it: the client's licence for {product_name}, made on the first sync if missing"
                     if self.product.psa_product_id else "— choose the licence —")  # fmt: skip
        choices = [("", blank)]
        mine = str(self.product.psa_product_id)
        key = "service_id" if self.connection.vendor == "autotask" else "item_id"
        items = sorted(lst.items, key=lambda i: (str((i.get("extra") or {}).get(key, "")) != mine, i["name"]))
        choices += [(str(item["id"]), self._line_label(item)) for item in items]
        current = self.value("line_id")
        if current and current not in lst.ids:
            saved = self.mapping.line_name if self.mapping is not None and self.mapping.line_id == current else ""
            choices.append((current, f"{saved or current}: not in {self.psa}'s list" if lst.ready else (saved or current)))
        return choices

    # --- what the page says around the fields ---------------------------------------------------------

    @property
    def needs_company(self) -> bool:
        return not self.chosen_company_id

    @property
    def chosen_company_name(self) -> str:
        return self.company_name(self.chosen_company_id)

    @property
    def company_changed(self) -> str:
        """The mapping was made for another company than the tenant's company mapping now names."""
        if self.spec.company_choice or self.mapping is None or self.company is None or not self.mapping.company_id:
            return ""
        if self.mapping.company_id == self.company.company_id:
            return ""
        before = self.mapping.company_name or self.mapping.company_id
        return (f"This mapping was made for {before}; the tenant is now mapped to {self.company.company_name or self.company.company_id}. "
                f"Until you save it again, billing goes to {before}.")

    @property
    def agreement_warning(self) -> str:
        if self.agreements is None or not self.agreements.ready:
            return ""
        if not self.agreements.items:
            noun = "active agreements" if self.connection.vendor == "connectwise" else "Recurring Service contracts"
            return f"{self.company_name(self.chosen_company_id) or 'This company'} has no {noun} in {self.psa}: create one there, then Refresh lists."
        return self.contract_warning(self.agreements.item(self.value("agreement_id")))

    @property
    def product_missing(self) -> str:
        if self.product.psa_product_id and self.product.vendor in ("", self.connection.vendor):
            return ""
        return (f"Product “{self.product.label}” is not mapped to a {self.psa} {self.spec.product_label} yet: "
                "choose it under Products first.")  # fmt: skip

    # --- validation and saving --------------------------------------------------------------------------

    def clean(self):
        data = super().clean()
        company_id = self.chosen_company_id
        if not company_id:
            raise forms.ValidationError(
                f"{self.tenant.name} is not mapped to a {self.psa} company: map it under Integrations › Map tenants"
                + (" or choose the customer here." if self.spec.company_choice else ".")
            )
        if self.spec.company_choice:
            data["company_id"] = company_id
        if self.agreements is not None:
            agreement_id = self.value("agreement_id")
            saved = self.mapping.agreement_id if self.mapping is not None else ""
            if not agreement_id:
                self.add_error("agreement_id", f"Choose the {self.spec.agreement_label.lower()}.")
            elif agreement_id != saved or company_id != (self.mapping.company_id if self.mapping else company_id):
                if not self.agreements.ready:
                    self.add_error("agreement_id", f"The {self.spec.agreement_label.lower()}s are still loading from "
                                                   f"{self.psa}: choose once they have loaded.")  # fmt: skip
                elif agreement_id not in self.agreements.ids:
                    self.add_error("agreement_id", f"Not among the company's {self.spec.agreement_label.lower()}s in "
                                                   f"{self.psa}: choose one from the list.")  # fmt: skip
            data["agreement_id"] = agreement_id
        if self.lines is not None:
            line_id = self.value("line_id")
            saved = self.mapping.line_id if self.mapping is not None else ""
            if line_id and line_id != saved:
                if not self.lines.ready:
                    self.add_error("line_id", f"The list is still loading from {self.psa}: choose once it has loaded.")
                elif line_id not in self.lines.ids:
                    self.add_error("line_id", f"Not in {self.psa}'s list: choose one from the list.")
            if not line_id and not self.product.psa_product_id:
                self.add_error("line_id", f"Choose the {self.spec.line_label.lower()}, or map product "
                                          f"“{self.product.label}” to a {self.psa} {self.spec.product_label} first.")  # fmt: skip
            data["line_id"] = line_id
        return data

    def mapping_fields(self) -> dict:
        data = self.cleaned_data
        fields = {"company_id": self.chosen_company_id, "company_name": self.company_name(self.chosen_company_id),
                  "mode": data.get("mode", ""), "agreement_id": "", "agreement_name": "", "line_id": "",
                  "line_name": "", "psa_product_id": ""}  # fmt: skip
        if self.agreements is not None:
            agreement_id = data["agreement_id"]
            saved = self.mapping.agreement_name if self.mapping is not None and self.mapping.agreement_id == agreement_id else ""
            fields.update(agreement_id=agreement_id, agreement_name=self.agreements.name_of(agreement_id) or saved)
        if self.lines is not None and data.get("line_id"):
            line_id = data["line_id"]
            item = self.lines.item(line_id)
            saved = self.mapping if self.mapping is not None and self.mapping.line_id == line_id else None
            fields.update(line_id=line_id, line_name=(item or {}).get("name") or (saved.line_name if saved else ""))
            if self.connection.vendor == "autotask":
                service_id = ((item or {}).get("extra") or {}).get("service_id") or (saved.psa_product_id if saved else "")
                fields["psa_product_id"] = str(service_id or "")
        return fields

    def save(self, account: Account) -> BillingMapping:
        return services.set_billing_mapping(account, self.tenant, self.product, self.mapping_fields())


def unmapped_reason(connection: Connection, product: ProductMapping, mapping: BillingMapping | None,
                    company: CompanyMapping | None) -> str:  # fmt: skip
    """Why this tenant's units of this product cannot be billed yet ('' when they can): the words
    the engine uses for an unmapped line."""
    words = services._words(connection.vendor)
    reason = services._unmapped_reason(product, mapping, company, connection.vendor, words)
    if mapping is None and (not reason or reason.startswith("Usage is reported")):
        what = f"the {words['name']} {words['agreement']}" if words["needs_agreement"] else "where to bill it"
        return f"Not mapped for billing: choose {what}."
    return reason
