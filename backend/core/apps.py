from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.core"
    label = "core"

    def ready(self):
        from . import signals  # noqa: F401  (worker heartbeats)
