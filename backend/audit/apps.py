from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.audit"
    label = "audit"
