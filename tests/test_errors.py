"""The error tree: what a caller catches, and the messages of the errors that build their own."""

from __future__ import annotations

import inspect

from webhook import errors
from webhook.errors import ApiError, WatchExpired, WebhookError


def test_every_error_is_a_webhook_error_and_listed():
    classes = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    exported = {name for name in errors.__all__ if inspect.isclass(getattr(errors, name))}
    assert set(classes) == exported
    assert all(issubclass(error, WebhookError) for error in classes.values())


def test_a_failed_api_call_says_its_status_or_that_there_was_no_answer():
    assert (ApiError(403, "forbidden").status, str(ApiError(403, "forbidden"))) == (
        403,
        "403: forbidden",
    )
    assert str(ApiError(0, "connection refused")) == "no answer: connection refused"


def test_an_expired_watch_is_an_http_410_api_error():
    expired = WatchExpired()
    assert isinstance(expired, ApiError)
    assert (expired.status, str(expired)) == (410, "410: resourceVersion too old")
