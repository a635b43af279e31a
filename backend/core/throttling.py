"""Login throttling: a pause after repeated failures, per user name and per address."""
from django.conf import settings
from django.core.cache import cache


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def failure_keys(username: str, address: str) -> list[str]:
    return [f"login-failures:user:{username.lower()}", f"login-failures:addr:{address}"]


def is_locked(username: str, address: str) -> bool:
    return any(cache.get(key, 0) >= settings.LOGIN_FAILURE_LIMIT for key in failure_keys(username, address))


def record_failure(username: str, address: str) -> None:
    for key in failure_keys(username, address):
        cache.add(key, 0, settings.LOGIN_FAILURE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, settings.LOGIN_FAILURE_WINDOW_SECONDS)


def clear_failures(username: str, address: str) -> None:
    cache.delete_many(failure_keys(username, address))


LOCKED_MESSAGE = "Too many failed logins. Wait 15 minutes and try again, or ask an administrator to reset your password."
