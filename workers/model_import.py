"""The model import job: what an uploaded ONNX file or safetensors weights can become (workers/engine/zoo/conversion.py).

The upload was checked before its row was made (backend/zoo/services.py); the job checks the file again with the
same engine checks before reading it (a row can point at a file that never went through the upload's checks: a
restore, a test), so a pickle is refused here too. Nothing is ever unpickled: ONNX is protobuf, safetensors raw
tensors. What the job writes: for weights copied onto a zoo network, its state dict as safetensors (ZooModel keys:
mean, std, network.*), which a run starts from (workers.engine.zoo.start.from_earlier_model); for safetensors, also
the network exported as ONNX, for prediction. A converted model is rebuilt from its ONNX file at each use.
A worker lost mid-import queues it again (the default): the import starts over.
"""
from __future__ import annotations

import torch
from django.db.models import F

from backend.core.tasks import INGEST_QUEUE
from backend.zoo.models import ImportedModel
from workers.engine.call import Refusal
from workers.engine.export import export_onnx, max_abs_difference
from workers.engine.observer import JobStopped
from workers.engine.zoo.conversion import ImportFailed, ImportResult, import_onnx, import_safetensors, zoo_model_from_state
from workers.engine.zoo.imports import inspect_onnx, inspect_safetensors
from workers.engine.zoo.registry import MODELS

from .jobs import JobRunner, register

Mode = ImportedModel.Mode
EXPORT_SIDE = 64  # the side a safetensors import is exported at for prediction when the architecture has no usual one


class ImportJob(JobRunner):
    model = ImportedModel
    task = "workers.tasks.import_model"
    queue = INGEST_QUEUE
    noun = "model import"
    stopped_message = "Stopped by the user; the model is not usable."

    def work(self, imported: ImportedModel, reporter) -> None:
        imported = ImportedModel.objects.select_related("project").get(pk=imported.pk)
        reporter.progress(0, 2, "checking the file")
        try:
            if imported.kind == ImportedModel.Kind.ONNX:
                facts = inspect_onnx(str(imported.source_path))
                step(reporter, "recognising the network, converting, comparing with onnxruntime")
                result = import_onnx(imported.source_path, facts, imported.mean, imported.std)
            else:
                facts = inspect_safetensors(str(imported.source_path), imported.architecture)
                step(reporter, "loading the weights onto the network, exporting to ONNX")
                result = import_safetensors(imported.source_path, imported.architecture, imported.mean, imported.std,
                                            imported.input_size)
        except (Refusal, ImportFailed) as refused:
            self.finish(imported, imported.FAILED, str(refused))
            return
        if reporter.should_stop():
            raise JobStopped  # before anything is written
        fields = self.store(imported, result)
        self.finish(imported, imported.DONE, "Imported.", mode=result.mode, reason=result.reason, architecture=result.architecture,
                    details={**imported.details, **result.details}, progress_done=F("progress_total"), **fields)

    def store(self, imported: ImportedModel, result: ImportResult) -> dict:
        """Write what the result keeps; the row's fields it changes."""
        fields = {}
        if result.state is not None:
            from safetensors.torch import save_file

            save_file({key: value.contiguous() for key, value in result.state.items()}, str(imported.weights_path))
        if imported.kind == ImportedModel.Kind.SAFETENSORS:
            entry = MODELS[result.architecture]
            trained_at = next((weights.size for weights in entry.weights if weights.size), None)  # MedicalNet's: none
            side = imported.input_size or trained_at or entry.max_size or max(entry.min_size, EXPORT_SIDE)
            model = zoo_model_from_state(result.architecture, result.state)
            example = torch.rand(1, model.mean.shape[1], side, side)
            export_onnx(model, example, imported.onnx_path)
            difference = max_abs_difference(model, imported.onnx_path, example)
            exported = inspect_onnx(str(imported.onnx_path))
            fields = {"inputs": exported["inputs"], "outputs": exported["outputs"], "input_size": side,
                      "class_count": exported["class_count"]}
            result.details["onnx_max_abs_difference"] = difference
        else:
            fields["class_count"] = imported.class_count or len(imported.classes)
        if imported.mean is None and result.mode == Mode.WEIGHTS_COPIED and imported.kind == ImportedModel.Kind.SAFETENSORS:
            normalisation = result.details.get("normalisation", {})
            fields.update(mean=normalisation.get("mean"), std=normalisation.get("std"))
        return fields

    def finish(self, job: ImportedModel, status: str, message: str, **fields) -> None:
        if status != job.DONE:
            fields.setdefault("mode", Mode.FAILED)
            fields.setdefault("reason", message)
        super().finish(job, status, message, **fields)

    def discard(self, imported: ImportedModel, status: str) -> None:
        """What an import that did not finish wrote (never the upload: the row still shows it, and can be deleted)."""
        imported.weights_path.unlink(missing_ok=True)
        if imported.kind == ImportedModel.Kind.SAFETENSORS:
            imported.onnx_path.unlink(missing_ok=True)

    def failure_message(self, exc: Exception) -> str:
        return f"The import failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]}); the worker log has the details."


IMPORT = register(ImportJob())


def step(reporter, words: str) -> None:
    """The file passed its checks: the next step begins, unless the user asked to stop."""
    if reporter.should_stop():
        raise JobStopped
    reporter.progress(1, 2, words)
