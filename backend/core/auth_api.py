from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.throttling import ScopedRateThrottle

from .errors import ServiceError
from .throttling import LOCKED_MESSAGE, clear_failures, client_address, is_locked, record_failure


class TokenLogin(ObtainAuthToken):
    """Exchange a user name and password for an API token; throttled like the login page."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=AuthTokenSerializer)
    def post(self, request, *args, **kwargs):
        username, address = str(request.data.get("username", "")), client_address(request)
        if is_locked(username, address):
            raise ServiceError(LOCKED_MESSAGE, code="locked", status_code=429)
        try:
            response = super().post(request, *args, **kwargs)
        except ValidationError:
            record_failure(username, address)
            raise
        clear_failures(username, address)
        return response
