from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field(OpenApiTypes.INT)
class OwnedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A related id limited to the objects the requesting user may see.

    `scope` is a function (user -> queryset), so unknown and foreign ids read the same.
    """

    default_error_messages = {
        "does_not_exist": "No {model} with id {pk_value} exists in your projects.",
        "incorrect_type": "Expected an id number, got {data_type}.",
    }

    def __init__(self, scope, model_name: str, **kwargs):
        self.scope, self.model_name = scope, model_name
        super().__init__(**kwargs)

    def get_queryset(self):
        return self.scope(self.context["request"].user)

    def to_internal_value(self, data):
        try:
            return self.get_queryset().get(pk=int(data))
        except (TypeError, ValueError):
            self.fail("incorrect_type", data_type=type(data).__name__)
        except self.get_queryset().model.DoesNotExist:
            self.fail("does_not_exist", model=self.model_name, pk_value=data)
