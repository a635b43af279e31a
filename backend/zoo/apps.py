from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.zoo"
    label = "zoo"
    verbose_name = "Imported models"
