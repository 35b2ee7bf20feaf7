"""Tables as downloads: written row by row (CSV) or batch by batch (Parquet) to a temporary
file, then streamed from it in chunks through an async iterator, so that neither building
nor serving holds the whole table in memory (under ASGI Django would collect a synchronous
iterator into a list first).

CSV cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a
carriage return) get a leading apostrophe: model output is untrusted (OWASP's CSV injection
advice). Parquet keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

FORMATS = ("csv", "parquet")
BATCH_ROWS = 5_000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


CHUNK_BYTES = 1 << 20


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def download(fmt: str, filename: str, columns: list[str], rows: Iterable[dict[str, Any]],
             types: dict[str, Any] | None = None) -> StreamingHttpResponse:
    """`rows` (dicts) as `<filename>.csv` or `.parquet`; `types` gives pyarrow types for
    columns whose type a batch of Nones could not show (the rest are strings)."""
    out = _csv(columns, rows) if fmt == "csv" else _parquet(columns, rows, types or {})
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    response = StreamingHttpResponse(_chunks(out), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response


async def _chunks(out: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await sync_to_async(out.read)(CHUNK_BYTES):
            yield chunk
    finally:
        out.close()  # a TemporaryFile: gone with it


def _spooled(write: Any) -> Any:
    """A temporary file `write(file)` filled, rewound for reading; the response closes it
    (`_chunks`), and a failed write closes it here."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - it outlives this call: the response streams and closes it
    try:
        write(out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _csv(columns: list[str], rows: Iterable[dict[str, Any]]) -> Any:
    def write(out: Any) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_safe(row.get(c)) for c in columns])
        text.flush()
        text.detach()  # leave `out` open

    return _spooled(write)


def _parquet(columns: list[str], rows: Iterable[dict[str, Any]], types: dict[str, Any]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])

    def write(out: Any) -> None:
        with pq.ParquetWriter(out, schema) as writer:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))

    return _spooled(write)
