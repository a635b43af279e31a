from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.core"
    label = "core"
