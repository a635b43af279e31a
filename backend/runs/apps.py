from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.runs"
    label = "runs"
