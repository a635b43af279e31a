from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.projects"
    label = "projects"
