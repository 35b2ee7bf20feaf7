"""What a worker does with a dataset export (claim the job, write the file, report how it
ended) and with an uploaded dataset (claim it, parse and store it, or mark it failed with
the reason). Called by `workers.tasks.dataset_export` and `workers.tasks.dataset_import`."""

from __future__ import annotations

import logging

from engine.datasets import DatasetError
from webapp.datasets.models import DatasetExport
from webapp.datasets.services import (
    dataset_download_path,
    dataset_import_run,
    export_claim,
    export_finish,
    export_progress,
    import_claim,
    import_cleanup,
    import_fail,
)

log = logging.getLogger(__name__)


def execute_export(*, export_id: int) -> str:
    if not export_claim(export_id=export_id):
        return "not queued"
    job = DatasetExport.objects.select_related("dataset").get(pk=export_id)
    total = max(job.dataset.row_count, 1)

    def progress(done: int) -> None:  # reading rows is 90% of the work; writing the rest
        export_progress(export_id=export_id, share=min(0.9, 0.9 * done / total))

    try:
        path = dataset_download_path(job.dataset, job.fmt, progress)
    except Exception as e:  # the job must end either way; the person sees the reason
        log.exception("export %s failed", export_id)
        export_finish(export_id=export_id, status=DatasetExport.Status.FAILED, error=str(e)[:2000])
        return "failed"
    export_finish(export_id=export_id, status=DatasetExport.Status.DONE, path=str(path))
    return "done"


def execute_import(*, dataset_id: int) -> str:
    if not import_claim(dataset_id=dataset_id):
        return "not queued"
    try:
        result = dataset_import_run(dataset_id=dataset_id)
    except DatasetError as e:  # the file's fault: the sentence names the rule it broke
        import_fail(dataset_id=dataset_id, reason=str(e))
        return "failed"
    except Exception as e:  # the import must end either way; the person sees the reason
        log.exception("import of dataset %s failed", dataset_id)
        import_fail(dataset_id=dataset_id, reason=f"the import failed: {e}")
        return "failed"
    finally:
        import_cleanup(dataset_id=dataset_id)  # the staged upload, whichever way it ended
    return result
