from django import forms
from django.contrib.auth.forms import AuthenticationForm

from hub.models import EXTERNAL_ID_MAX, Tenant
from hub.tenancy import ROLE_CHOICES


class SignInForm(AuthenticationForm):
    username = forms.CharField(label="E-mail or username", max_length=254, widget=forms.TextInput(attrs={"autofocus": True}))


class TenantForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = ["name", "external_id"]
        labels = {"external_id": "External ID"}
        help_texts = {"external_id": "The id the host product uses for this customer. Unique in this account."}

    def __init__(self, *args, account, **kwargs):
        self.account = account
        super().__init__(*args, **kwargs)
        self.fields["external_id"].max_length = EXTERNAL_ID_MAX

    def clean_external_id(self) -> str:
        value = self.cleaned_data["external_id"].strip()
        if not value:
            raise forms.ValidationError("Enter the host product's id for this customer.")
        if "/" in value:
            raise forms.ValidationError("The external ID cannot contain '/'.")
        clash = Tenant.objects.for_account(self.account).filter(external_id=value)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("Another tenant in this account already has this external ID.")
        return value

    def save(self, commit=True):
        self.instance.account = self.account
        return super().save(commit)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this key, e.g. “Host product production”.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="admin", help_text="Support keys can only read.")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name so you can tell keys apart later.")
        return name

