from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.experiments"
    label = "experiments"
