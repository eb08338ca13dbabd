"""Pure. EKS Auth's error types, with the HTTP status botocore's `eks-auth` model gives each.

EksAuthError                 base; `code` is the wire name, `status` the HTTP status
├── AccessDeniedException      400  the caller or the role policy refuses
├── ExpiredTokenException      400  the Pod's token has expired
├── InternalServerException    500  a bug or an unexpected answer
├── InvalidParameterException  400  a field is malformed (cluster name, token shape)
├── InvalidRequestException    400  the request is not what the operation takes
├── InvalidTokenException      400  the token is not a valid Pod-bound token
├── ResourceNotFoundException  404  no association for the token's ServiceAccount
├── ServiceUnavailableException 503 the API server or STS cannot be reached
└── ThrottlingException        429  the STS rate bound was hit
"""

from __future__ import annotations

__all__ = [
    "ERRORS",
    "AccessDeniedException",
    "EksAuthError",
    "ExpiredTokenException",
    "InternalServerException",
    "InvalidParameterException",
    "InvalidRequestException",
    "InvalidTokenException",
    "ResourceNotFoundException",
    "ServiceUnavailableException",
    "ThrottlingException",
]


class EksAuthError(Exception):
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


ERRORS: dict[str, type[EksAuthError]] = {
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
