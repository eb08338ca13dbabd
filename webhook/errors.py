"""Pure. Every error the webhook raises on purpose, in one tree.

    WebhookError                base of everything below
    ├── ConfigError             bad flags or unreadable start-up files → exit status 2
    │   └── FlagError           a command line pflag would refuse; names the flag
    ├── InputError              a file given to `mutate` cannot be read or is not what it should be
    ├── BadReview               the HTTP body is not an AdmissionReview carrying a Pod → HTTP 400
    │   └── InvalidPod          request.object is not a Pod object → HTTP 400
    ├── PolicyError             the role-policy file is invalid (also a ValueError)
    ├── CsvError                not a CSV record, as Go's encoding/csv says (also a ValueError)
    ├── ApiError                a Kubernetes API call failed; `status` 0 means no HTTP answer
    │   └── WatchExpired        the watch's resourceVersion is too old (HTTP 410): list again
    └── EksAuthError            an EKS Auth answer of the broker: `code` on the wire, HTTP `status`
        ├── AccessDeniedException        400  the caller or the role policy refuses
        ├── ExpiredTokenException        400  the Pod's token has expired
        ├── InternalServerException      500  a bug or an unexpected answer
        ├── InvalidParameterException    400  a field is malformed (cluster name, token shape)
        ├── InvalidRequestException      400  the request is not what the operation takes
        ├── InvalidTokenException        400  the token is not a valid Pod-bound token
        ├── ResourceNotFoundException    404  no association for the token's ServiceAccount
        ├── ServiceUnavailableException  503  the API server or STS cannot be reached
        └── ThrottlingException          429  the STS rate bound was hit

Webhook-request failures (these) are kept apart from admission outcomes (`allowed` and
`status` in the response), which the pure core returns as values. The two ValueError
subclasses are what a polled file's parser raises to say "keep the previous content".
"""

from __future__ import annotations

__all__ = [
    "EKS_AUTH_ERRORS",
    "AccessDeniedException",
    "ApiError",
    "BadReview",
    "ConfigError",
    "CsvError",
    "EksAuthError",
    "ExpiredTokenException",
    "FlagError",
    "InputError",
    "InternalServerException",
    "InvalidParameterException",
    "InvalidPod",
    "InvalidRequestException",
    "InvalidTokenException",
    "PolicyError",
    "ResourceNotFoundException",
    "ServiceUnavailableException",
    "ThrottlingException",
    "WatchExpired",
    "WebhookError",
]


class WebhookError(Exception):
    """Base class for errors raised on purpose."""


class ConfigError(WebhookError):
    """A flag or start-up file is invalid; the message names it."""


class FlagError(ConfigError):
    """A command line that pflag would refuse; the message names the flag."""


class InputError(WebhookError):
    """An input file of the offline `mutate` command is unreadable or invalid."""


class BadReview(WebhookError):
    """The request body is not an AdmissionReview for a Pod."""


class InvalidPod(BadReview):
    """request.object (or a Pod manifest) does not have a Pod's shape; the message says where."""


class PolicyError(WebhookError, ValueError):
    """The policy file is invalid; the message says where."""


class CsvError(WebhookError, ValueError):
    """Text that Go's encoding/csv would not read as a record."""


class ApiError(WebhookError):
    """A failed Kubernetes API call; `status` 0 means no HTTP answer (connection, timeout)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status or 'no answer'}: {message}")
        self.status = status


class WatchExpired(ApiError):
    """The watch's resourceVersion is too old (HTTP 410): list again."""

    def __init__(self, message: str = "resourceVersion too old") -> None:
        super().__init__(410, message)


class EksAuthError(WebhookError):
    """An EKS Auth error answer: `x-amzn-ErrorType: <code>` and `{"message": ...}`."""

    code = "InternalServerException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AccessDeniedException(EksAuthError):
    code, status = "AccessDeniedException", 400


class ExpiredTokenException(EksAuthError):
    code, status = "ExpiredTokenException", 400


class InternalServerException(EksAuthError):
    code, status = "InternalServerException", 500


class InvalidParameterException(EksAuthError):
    code, status = "InvalidParameterException", 400


class InvalidRequestException(EksAuthError):
    code, status = "InvalidRequestException", 400


class InvalidTokenException(EksAuthError):
    code, status = "InvalidTokenException", 400


class ResourceNotFoundException(EksAuthError):
    code, status = "ResourceNotFoundException", 404


class ServiceUnavailableException(EksAuthError):
    code, status = "ServiceUnavailableException", 503


class ThrottlingException(EksAuthError):
    code, status = "ThrottlingException", 429


EKS_AUTH_ERRORS: dict[str, type[EksAuthError]] = {
    cls.code: cls
    for cls in (
        AccessDeniedException,
        ExpiredTokenException,
        InternalServerException,
        InvalidParameterException,
        InvalidRequestException,
        InvalidTokenException,
        ResourceNotFoundException,
        ServiceUnavailableException,
        ThrottlingException,
    )
}
