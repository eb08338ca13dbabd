"""Pure. Every error the webhook raises on purpose.

    WebhookError                base of everything below
    ├── ConfigError             bad flags or unreadable start-up files → exit status 2
    ├── InputError              a file given to `mutate` cannot be read or is not what it should be
    └── BadReview               the HTTP body is not an AdmissionReview carrying a Pod → HTTP 400
        └── InvalidPod          request.object is not a Pod object → HTTP 400

Webhook-request failures (these) are kept apart from admission outcomes (`allowed` and
`status` in the response), which the pure core returns as values.
"""

from __future__ import annotations

__all__ = ["BadReview", "ConfigError", "InputError", "InvalidPod", "WebhookError"]


class WebhookError(Exception):
    """Base class for errors raised on purpose."""


class ConfigError(WebhookError):
    """A flag or start-up file is invalid; the message names it."""


class InputError(WebhookError):
    """An input file of the offline `mutate` command is unreadable or invalid."""


class BadReview(WebhookError):
    """The request body is not an AdmissionReview for a Pod."""


class InvalidPod(BadReview):
    """request.object (or a Pod manifest) does not have a Pod's shape; the message says where."""
