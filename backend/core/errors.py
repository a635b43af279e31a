"""One error shape for the whole API, and the exception services raise.

Every error response is
    {"code": "...", "message": "...", "field": "..." | null,
     "errors": [{"code", "message", "field"}, ...]}
where the top-level triple repeats the first entry of "errors".
"""
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ServiceError(Exception):
    """A rule of the domain was broken; the message tells the user what to do."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid", status_code: int = 400,
                 errors: list[dict] | None = None):
        super().__init__(message)
        self.message, self.field, self.code, self.status_code = message, field, code, status_code
        # Several problems at once (each {code, message, field}); the first is also the headline.
        self.errors = errors or [{"code": code, "message": message, "field": field}]


def flatten(detail, field=None):
    """DRF's nested error details as a flat list of {code, message, field}."""
    if isinstance(detail, dict):
        items = []
        for key, value in detail.items():
            name = None if key == "non_field_errors" else (key if field is None else f"{field}.{key}")
            items.extend(flatten(value, name))
        return items
    if isinstance(detail, list):
        return [item for value in detail for item in flatten(value, field)]
    return [{"code": getattr(detail, "code", "invalid"), "message": str(detail), "field": field}]


def error_body(errors: list[dict]) -> dict:
    first = errors[0]
    return {**first, "errors": errors}


def api_exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.errors), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found. It does not exist or you have no access to it.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    errors = flatten(exc.detail) if isinstance(exc, exceptions.APIException) else []
    if not errors:
        errors = [{"code": "error", "message": str(exc), "field": None}]
    response.data = error_body(errors)
    return response


def error_response(message: str, field: str | None = None, code: str = "invalid", status_code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response(error_body([{"code": code, "message": message, "field": field}]), status=status_code)


LARGEST_ID = 2**63 - 1  # a database's largest integer key: a larger number cannot name anything


def int_query_param(request, name: str) -> int | None:
    """An optional whole-number query parameter; anything else is a 400, not silently ignored."""
    raw = request.query_params.getlist(name)
    if not raw:
        return None
    if len(raw) > 1 or not raw[0].isdigit() or int(raw[0]) > LARGEST_ID:
        raise ServiceError(f"'{name}' must be given once, as a whole number (an id).", field=name)
    return int(raw[0])
