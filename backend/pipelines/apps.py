from django.apps import AppConfig


class Config(AppConfig):
    name = "backend.pipelines"
    label = "pipelines"
