"""The upload size cap, enforced while a file streams in.

`CappedUploadHandler` sits first in FILE_UPLOAD_HANDLERS: it counts each file's bytes as
they arrive and stops the upload past PONDER_MAX_UPLOAD_MB, so the handlers after it (a
temporary file) never hold more than the cap. Django then drops the partial file and
reads the rest of the body away; the view asks `refusal(request)` for the sentence.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

MB = 1024 * 1024


def cap_bytes() -> int:
    return int(settings.PONDER_MAX_UPLOAD_MB) * MB


def too_large(field: str, size: int) -> str:
    """The sentence for an upload over the cap, naming the field, the size and the setting."""
    cap = int(settings.PONDER_MAX_UPLOAD_MB)
    shown = round(size / MB)
    said = f"is {shown} MB" if shown > cap else f"is over {cap} MB"
    return f"{field}: {said}; uploads are limited to {cap} MB (PONDER_MAX_UPLOAD_MB)."


class CappedUploadHandler(FileUploadHandler):
    """Passes chunks on to the next handler until a file passes the cap, then stops."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.refused: str | None = None
        self.received = 0
        self.body_length = 0  # not `content_length`: new_file() sets that to the part's own

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int, boundary: Any,
                         encoding: str | None = None) -> None:
        self.body_length = content_length or 0  # the whole body: the best size to report
        return None

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > cap_bytes():
            self.refused = too_large(self.field_name or "file", max(self.body_length, self.received))
            # Not a connection reset: the browser then gets the form back with the sentence.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler returns the file


def refusal(request: HttpRequest) -> str | None:
    """The cap's sentence when this request's upload was stopped, else None (reads FILES)."""
    request.FILES  # noqa: B018 - parsing the body is what runs the handlers
    for handler in request.upload_handlers:
        if isinstance(handler, CappedUploadHandler) and handler.refused:
            return handler.refused
    return None
