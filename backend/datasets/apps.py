from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.datasets"
    label = "datasets"
