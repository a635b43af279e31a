"""The browser's login page, with the same failure throttling as the API."""
from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm

from backend.core.throttling import LOCKED_MESSAGE, clear_failures, client_address, is_locked, record_failure


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your user name and password did not match. Please try again.",
    }

    def clean(self):
        username = self.data.get("username", "")
        address = client_address(self.request) if self.request else "unknown"
        if is_locked(username, address):
            raise forms.ValidationError(LOCKED_MESSAGE, code="locked")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            record_failure(username, address)
            raise
        clear_failures(username, address)
        return cleaned


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
