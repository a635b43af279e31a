"""Importing models (ONNX, safetensors) through the API: the checks that refuse an upload keeping nothing, the import
job's outcomes (weights copied onto a zoo network, converted by onnx2torch, prediction only), prediction through
onnxruntime, fine-tuning from an imported model, and the launch's checks. The job runs in this process here;
tests/integration/test_model_import_worker.py runs it in a real worker."""
import io
import pickle

import numpy as np
import onnxruntime
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.audit.models import AuditEvent
from backend.datasets.services import create_partition
from backend.zoo.models import ImportedModel
from backend.zoo.services import imported_model_start
from tests.conftest import png_bytes
from tests.factories import ready_dataset, training_spec, with_training_cache
from tests.model_files import (
    custom_onnx,
    external_data_onnx,
    flat_input_onnx,
    if_onnx,
    malicious_pickle,
    malicious_torch_save,
    mutations,
    old_squeezenet,
    save_onnx,
    two_input_onnx,
    zoo_onnx,
    zoo_safetensors,
)
from workers.engine.data import CachedImages
from workers.engine.export import export_onnx, max_abs_difference
from workers.engine.training.spec import resolve_spec
from workers.engine.training.trainer import Trainer, TrainingData
from workers.engine.zoo.conversion import last_linear
from workers.engine.zoo.start import read_state, starting_model
from workers.model_import import IMPORT

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    zoo_model, zoo_path = zoo_onnx(folder / "small_cnn.onnx", "small_cnn", channels=1, classes=2, size=32)
    custom_model, custom_path = custom_onnx(folder / "custom.onnx", channels=1, classes=3, size=24)
    return {"zoo": zoo_path, "zoo_model": zoo_model, "custom": custom_path, "custom_model": custom_model,
            "branchy": if_onnx(folder / "branchy.onnx"), "two_inputs": two_input_onnx(folder / "two.onnx"),
            "flat": flat_input_onnx(folder / "flat.onnx"), "external": external_data_onnx(folder),
            # a third party's old graph: opset 9, IR version 3, kernels in Constant nodes, biases listed among the
            # inputs, a batch fixed to one image, output [1, 5, 1, 1] (SqueezeNet as the ONNX model zoo has it)
            "old_style": save_onnx(old_squeezenet("mixed", 9, channels=1, classes=5, side=32), folder / "squeezenet.onnx"),
            "safetensors": zoo_safetensors(folder / "small_cnn.safetensors", "small_cnn", 1, 2)[1],
            "torchvision_style": zoo_safetensors(folder / "lenet.safetensors", "lenet5", 1, 4, prefixed=False)[1]}


def upload(api, project, file_name: str, data: bytes, **fields):
    return api.post("/api/imported-models/", {"project": project.pk, "file": SimpleUploadedFile(file_name, data), **fields}, format="multipart")


def imported(api, project, file_name: str, data: bytes, **fields) -> ImportedModel:
    """Upload, then run the import job here (as a worker would)."""
    response = upload(api, project, file_name, data, **fields)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["mode"] == "checking" and body["status"] == "queued"
    IMPORT.run(body["id"], "test")
    return ImportedModel.objects.get(pk=body["id"])


def stored_files(settings) -> list:
    return [path for path in settings.STORAGE_ROOT.rglob("*") if path.is_file()]


def assert_refused(response, settings, *phrases):
    assert response.status_code == 400, response.content
    message = response.json()["message"]
    for phrase in phrases:
        assert phrase in message, message
    assert not ImportedModel.objects.exists(), "a refused upload leaves no row"
    assert stored_files(settings) == [], "a refused upload leaves no file"
    assert not AuditEvent.objects.filter(object_type="imported_model").exists()
    return message


# ----------------------------------------------------------------------------------------------- what an import becomes


def test_a_zoo_network_exported_by_the_toolkit_comes_back_with_its_weights_and_identical_outputs(api, project, files):
    model = imported(api, project, "small_cnn.onnx", files["zoo"].read_bytes(), name="Our own")
    assert (model.status, model.mode, model.architecture) == ("ready", "weights_copied", "small_cnn"), model.reason
    assert model.opset == 20 and model.producer.startswith("pytorch") and model.channels == 1 and model.input_size == 32
    assert model.inputs == [{"name": "image", "type": "float32", "shape": ["batch", 1, 32, 32]}]
    assert "Recognised as Small CNN" in model.reason and "matched by name" in model.reason and "folded" in model.reason
    assert model.details["matched"] == "by name" and model.details["folded_batchnorm"] == 3
    # The stored weights are a ZooModel's: the network the run would start from gives the original's outputs.
    rebuilt = starting_model({"architecture": "small_cnn", "weights": "imported"}, 1, 2, imported_model_start(model)).eval()
    assert set(read_state(model.weights_path)) >= {"mean", "std", "network.block1.0.weight", "network.head.weight"}
    images = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        assert (rebuilt(images) - files["zoo_model"](images)).abs().max() < 1e-5
    body = api.get(f"/api/imported-models/{model.pk}/").json()
    assert body["trainable"] and body["architecture_title"] == "Small CNN" and body["finished"] and body["progress"] == 1.0
    assert AuditEvent.objects.filter(object_type="imported_model", action="create", object_id=model.pk).exists()


def test_a_cnn_the_zoo_does_not_have_is_converted_by_onnx2torch_and_trains(api, project, files, tmp_path):
    model = imported(api, project, "custom.onnx", files["custom"].read_bytes())
    assert (model.status, model.mode, model.architecture) == ("ready", "converted", "imported"), model.reason
    assert "not one of the zoo's networks" in model.reason and "onnx2torch" in model.reason and "opset 20 converted to 17" in model.reason
    assert not model.weights_path.exists(), "a converted model is rebuilt from its ONNX file, never pickled or stored as a module"
    start = imported_model_start(model)
    assert start.onnx_path == str(model.onnx_path) and start.state_path is None
    rebuilt = starting_model({"architecture": "imported", "weights": "imported"}, 1, 3, start).eval()
    images = torch.rand(4, 1, 24, 24)
    with torch.no_grad():
        assert (rebuilt(images) - files["custom_model"](images)).abs().max() < 1e-5
    # New classes: the last dense layer is replaced; the rest trains.
    trainer = Trainer(resolve_spec({"model": {"architecture": "imported", "weights": "imported", "imported_model": model.pk},
                                    "epochs": 1, "batch_size": 4, "schedule": {"name": "constant"}}),
                      tiny_data(project, 24, classes=("a", "b")), start=start)
    assert trainer.model.network.get_submodule("node_linear_1").out_features == 2
    outcome = trainer.fit()
    assert outcome.state.epoch == 1 and np.isfinite(outcome.state.best_value or 0.0)
    # What the training job does last: the fine-tuned model exported as ONNX again, agreeing with PyTorch.
    example = torch.rand(2, 1, 24, 24)
    export_onnx(outcome.model, example, tmp_path / "fine-tuned.onnx")
    assert max_abs_difference(outcome.model, tmp_path / "fine-tuned.onnx", example) < 1e-4


def test_control_flow_onnx2torch_lacks_leaves_a_model_for_prediction_only_and_it_predicts(api, project, files):
    model = imported(api, project, "branchy.onnx", files["branchy"].read_bytes())
    assert (model.status, model.mode) == ("ready", "prediction_only"), model.reason
    assert "onnx2torch has no converter for the operation 'If'" in model.reason and "predict through onnxruntime" in model.reason
    picture = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    response = api.post(f"/api/imported-models/{model.pk}/predict/", {"image": SimpleUploadedFile("x.png", png_bytes(picture))},
                        format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    # The image as a dataset would cache it: resized to the model's 16×16, in [0, 1]; onnxruntime's answer on it.
    from PIL import Image

    expected_input = np.asarray(Image.fromarray(picture).resize((16, 16), Image.BILINEAR), np.float32)[None, None] / 255
    session = onnxruntime.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": expected_input})[0][0]
    assert body["input_shape"] == [1, 16, 16] and np.allclose(body["outputs"], expected, atol=1e-5)
    assert np.isclose(sum(body["probabilities"]), 1) and body["top"]["index"] == int(np.argmax(expected))
    assert body["classes"] == ["0", "1"]


def test_safetensors_weights_of_a_zoo_network_are_imported_exported_and_predict(api, project, files):
    model = imported(api, project, "small.safetensors", files["safetensors"].read_bytes(), architecture="small_cnn")
    assert (model.status, model.mode, model.architecture) == ("ready", "weights_copied", "small_cnn"), model.reason
    assert "the file's own mean and std" in model.reason and model.mean == [0.5] and model.input_size == 64
    assert model.onnx_path.is_file() and model.details["onnx_max_abs_difference"] < 1e-4
    response = api.post(f"/api/imported-models/{model.pk}/predict/",
                        {"image": SimpleUploadedFile("x.png", png_bytes(np.full((64, 64), 128, np.uint8)))}, format="multipart")
    assert response.status_code == 200 and len(response.json()["probabilities"]) == 2


def test_torchvision_style_keys_and_the_given_normalisation_are_taken(api, project, files):
    model = imported(api, project, "lenet.safetensors", files["torchvision_style"].read_bytes(), architecture="lenet5",
                     mean="0.2", std="0.3")
    assert (model.mode, model.class_count, model.mean, model.std) == ("weights_copied", 4, [0.2], [0.3]), model.reason
    state = read_state(model.weights_path)
    assert torch.allclose(state["mean"], torch.tensor(0.2)) and "network.conv1.weight" in state


def test_export_import_fine_tune_round_trip(api, project, files):
    """A model the toolkit exported, imported back, trains for an epoch from its copied weights (new classes: new head)."""
    model = imported(api, project, "small_cnn.onnx", files["zoo"].read_bytes())
    start = imported_model_start(model)
    spec = resolve_spec({"model": {"architecture": "small_cnn", "weights": "imported", "imported_model": model.pk}, "epochs": 1,
                         "batch_size": 4, "schedule": {"name": "constant"}})
    trainer = Trainer(spec, tiny_data(project, 32, classes=("x", "y", "z")), start=start)
    copied = read_state(model.weights_path)
    assert torch.equal(trainer.model.state_dict()["network.block2.0.weight"], copied["network.block2.0.weight"])
    assert trainer.model.network.head.out_features == 3
    outcome = trainer.fit()
    assert outcome.state.epoch == 1
    assert not torch.equal(outcome.model.state_dict()["network.block2.0.weight"], copied["network.block2.0.weight"]), "it trained"


def test_a_third_party_old_style_graph_is_imported_fine_tuned_and_exported(api, project, files, user, tmp_path):
    """Import -> fine-tune -> export for a graph from outside the toolkit in the old style (weights among the inputs and
    in Constant nodes, a fixed batch, a [N, C, 1, 1] output): normalised, converted, trained, exported, imported again."""
    model = imported(api, project, "squeezenet.onnx", files["old_style"].read_bytes(), name="SqueezeNet (zoo)")
    assert (model.status, model.mode, model.architecture) == ("ready", "converted", "imported"), model.reason
    assert model.class_count == 5 and "Its graph was normalised first" in model.reason
    assert set(model.details["normalisation"]["applied"]) == {"weights_out_of_inputs", "fold_constants", "free_batch",
                                                              "squeeze_spatial_output"}
    start = imported_model_start(model)
    rebuilt = starting_model({"architecture": "imported", "weights": "imported"}, 1, 5, start).eval()
    images = torch.rand(3, 1, 32, 32)
    session = onnxruntime.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"data_0": images[i:i + 1].numpy()})[0] for i in range(3)]).reshape(3, 5)
    with torch.no_grad():
        assert np.abs(rebuilt(images).numpy() - expected).max() < 1e-4, "the file's own head kept: onnxruntime's outputs"
    partition = create_partition(user, ready_dataset(project, size=32), "", 70, 15, 15, 1)
    launched = launch(api, partition, {"architecture": "imported", "weights": "imported", "imported_model": model.pk})
    assert launched.status_code == 202, launched.content
    # New classes: the 1×1 convolution head (a dense layer over each position's channels once converted) is replaced.
    trainer = Trainer(resolve_spec({"model": {"architecture": "imported", "weights": "imported", "imported_model": model.pk},
                                    "epochs": 1, "batch_size": 4, "schedule": {"name": "constant"}}),
                      tiny_data(project, 32, classes=("x", "y", "z")), start=start)
    head = trainer.model.network.get_submodule(last_linear(trainer.model.network))
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    assert head.out_features == 3
    outcome = trainer.fit()
    assert outcome.state.epoch == 1 and np.isfinite(outcome.state.best_value or 0.0)
    after = outcome.model.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before if "conv1" in name), "the body trained too"
    example = torch.rand(2, 1, 32, 32)
    exported = tmp_path / "fine-tuned.onnx"
    export_onnx(outcome.model, example, exported)
    assert max_abs_difference(outcome.model, exported, example) < 1e-4
    again = imported(api, project, "fine-tuned.onnx", exported.read_bytes())
    assert (again.mode, again.trainable) == ("converted", True), again.reason  # its head: MatMul + Add, a dense layer again


def tiny_data(project, size: int, classes=("a", "b")) -> TrainingData:
    dataset = with_training_cache(ready_dataset(project, labels=classes, per_class=4, size=size))
    indices = list(range(len(classes) * 4))
    targets = [i // 4 for i in indices]
    subset = CachedImages(dataset.cache_path, indices, targets)
    return TrainingData(subset, CachedImages(dataset.cache_path, indices, targets), 1, list(classes))


# ----------------------------------------------------------------------------------------------- refusals: nothing kept


def test_a_corrupt_onnx_is_refused(api, project, settings):
    assert_refused(upload(api, project, "broken.onnx", b"\x08\x07" + bytes(range(256)) * 4), settings, "not an ONNX file")


def test_two_inputs_are_refused_naming_them(api, project, settings, files):
    assert_refused(upload(api, project, "two.onnx", files["two_inputs"].read_bytes()), settings, "2 inputs", "'image'", "'mask'")


def test_an_input_that_is_not_a_batch_of_images_is_refused(api, project, settings, files):
    assert_refused(upload(api, project, "flat.onnx", files["flat"].read_bytes()), settings, "(N, C, H, W)")


def test_weights_in_external_data_are_refused(api, project, settings, files):
    assert_refused(upload(api, project, "outside.onnx", files["external"].read_bytes()), settings, "external data outside the upload")


def test_a_file_over_the_size_limit_is_refused(api, project, settings, files):
    settings.MODEL_IMPORT_MAX_BYTES = 1000
    assert_refused(upload(api, project, "small_cnn.onnx", files["zoo"].read_bytes()), settings, "limited to")


def test_safetensors_of_another_architecture_are_refused_naming_keys(api, project, settings, files):
    message = assert_refused(upload(api, project, "small.safetensors", files["safetensors"].read_bytes(), architecture="resnet18"),
                             settings, "a weights file for another architecture than ResNet-18")
    assert "network.conv1.weight" in message and "network.block1.0.weight" in message


def test_safetensors_need_their_architecture_and_onnx_brings_its_own(api, project, settings, files):
    assert_refused(upload(api, project, "small.safetensors", files["safetensors"].read_bytes()), settings, "Name the architecture")
    assert_refused(upload(api, project, "m.onnx", files["zoo"].read_bytes(), architecture="resnet18"), settings, "holds its own architecture")
    assert_refused(upload(api, project, "m.h5", b"\x89HDF\r\n\x1a\n"), settings, "neither an ONNX file")


def test_mean_without_std_and_a_bad_count_are_refused(api, project, settings, files):
    assert_refused(upload(api, project, "m.onnx", files["zoo"].read_bytes(), mean="0.5"), settings, "together")
    assert_refused(upload(api, project, "m.onnx", files["zoo"].read_bytes(), mean="0.1, 0.2", std="1, 1"), settings, "1-channel")
    assert_refused(upload(api, project, "m.onnx", files["zoo"].read_bytes(), mean="a", std="1"), settings, "list of numbers")


# ----------------------------------------------------------------------------------------------- safety


@pytest.mark.parametrize("name", ["weights.safetensors", "weights.pt", "model.onnx", "model.pth", "model.ckpt"])
@pytest.mark.parametrize("maker", [malicious_pickle, malicious_torch_save], ids=["pickle", "torch.save zip"])
def test_a_malicious_pickle_under_any_name_is_refused_and_never_unpickled(api, project, settings, tmp_path, name, maker):
    marker = tmp_path / "pwned"
    payload = maker(marker)
    control = tmp_path / "control"
    pickle.loads(malicious_pickle(control)) if maker is malicious_pickle else torch.load(io.BytesIO(maker(control)), weights_only=False)
    assert control.exists(), "the payload is live: unpickling it creates its marker"
    fields = {"architecture": "small_cnn"} if name.endswith(".safetensors") else {}
    message = assert_refused(upload(api, project, name, payload, **fields), settings)
    assert "pickle" in message or "not an ONNX file" in message, message
    assert not marker.exists(), "nothing uploaded is ever unpickled"


@pytest.mark.parametrize("kind, maker", [("onnx", malicious_pickle), ("onnx", malicious_torch_save),
                                         ("safetensors", malicious_pickle), ("safetensors", malicious_torch_save)])
def test_the_import_job_refuses_a_pickle_it_is_handed_without_unpickling_it(project, tmp_path, kind, maker):
    """A row whose file never went through the upload's checks (restored, planted): the job checks again."""
    marker = tmp_path / "pwned"
    model = ImportedModel.objects.create(project=project, name="planted", kind=kind, architecture="small_cnn" if kind == "safetensors" else "",
                                         channels=1)
    model.storage_dir.mkdir(parents=True)
    model.source_path.write_bytes(maker(marker))
    IMPORT.run(model.pk, "test")
    model.refresh_from_db()
    assert (model.status, model.mode) == ("failed", "failed")
    assert "pickle" in model.reason or "zip archive" in model.reason, model.reason
    assert not marker.exists()


def test_damaged_copies_of_a_valid_onnx_get_a_400_or_a_clean_outcome_never_a_500(api, project, files, settings):
    original = files["zoo"].read_bytes()
    outcomes = {}
    for what, data in mutations(original, 10, seed=13):
        response = upload(api, project, "damaged.onnx", data)
        assert response.status_code in (202, 400), (what, response.status_code, response.content[:300])
        if response.status_code == 400:
            assert response.json()["field"] == "file"
            outcomes[what] = "refused"
            continue
        IMPORT.run(response.json()["id"], "test")
        model = ImportedModel.objects.get(pk=response.json()["id"])
        assert model.status in ("ready", "failed") and model.mode in ("weights_copied", "converted", "prediction_only", "failed")
        assert model.reason, "every outcome says why"
        outcomes[what] = model.mode
    assert "refused" in outcomes.values(), outcomes


# ----------------------------------------------------------------------------------------------- access, launching, deleting


def test_outsiders_see_nothing_and_viewers_cannot_import(api, project, files, outsider, django_user_model):
    from rest_framework.test import APIClient

    from backend.projects.models import ProjectMember

    model = imported(api, project, "branchy.onnx", files["branchy"].read_bytes())
    stranger = APIClient()
    stranger.force_authenticate(outsider)
    assert stranger.get(f"/api/imported-models/{model.pk}/").status_code == 404
    assert stranger.get("/api/imported-models/").json()["count"] == 0
    assert stranger.post(f"/api/imported-models/{model.pk}/predict/", {}, format="multipart").status_code == 404
    viewer_user = django_user_model.objects.create_user("vera", password="vera-password-1")
    ProjectMember.objects.create(project=project, user=viewer_user, role="viewer")
    viewer = APIClient()
    viewer.force_authenticate(viewer_user)
    assert viewer.get(f"/api/imported-models/{model.pk}/").status_code == 200
    assert upload(viewer, project, "b.onnx", files["branchy"].read_bytes()).status_code == 403
    assert viewer.delete(f"/api/imported-models/{model.pk}/").status_code == 403


def launch(api, partition, model: dict):
    return api.post("/api/runs/", {"partition": partition.pk, "epochs": 1, "model": model}, format="json")


def test_a_launch_checks_the_imported_model_it_starts_from(api, project, files, user):
    partition = create_partition(user, ready_dataset(project, size=32), "", 70, 15, 15, 1)
    branchy = imported(api, project, "branchy.onnx", files["branchy"].read_bytes())
    refused = launch(api, partition, {"architecture": "imported", "weights": "imported", "imported_model": branchy.pk})
    assert refused.status_code == 400 and "can only predict" in refused.json()["message"] and "'If'" in refused.json()["message"]
    zoo = imported(api, project, "small_cnn.onnx", files["zoo"].read_bytes())
    wrong = launch(api, partition, {"architecture": "resnet18", "weights": "imported", "imported_model": zoo.pk})
    assert wrong.status_code == 400 and wrong.json()["field"] == "model.architecture" and "'small_cnn'" in wrong.json()["message"]
    launched = launch(api, partition, {"architecture": "small_cnn", "weights": "imported", "imported_model": zoo.pk})
    assert launched.status_code == 202, launched.content
    started_from = launched.json()["provenance"]["started_from"]
    assert started_from == {"weights": "imported", "imported_model": zoo.pk, "name": "small_cnn", "kind": "onnx", "file_name": "small_cnn.onnx",
                            "sha256": zoo.sha256, "mode": "weights_copied", "architecture": "small_cnn"}
    converted = imported(api, project, "custom.onnx", files["custom"].read_bytes())
    assert launch(api, partition, {"architecture": "small_cnn", "weights": "imported", "imported_model": converted.pk}).status_code == 400
    # Exported at 24×24 (the dataset's are 32×32): the images reach it at that size, resized inside the network.
    for input_size in (0, 30):
        other_size = launch(api, partition, {"architecture": "imported", "weights": "imported", "imported_model": converted.pk,
                                             "input_size": input_size})
        assert other_size.status_code == 400 and other_size.json()["field"] == "model.input_size", other_size.content
        assert "24×24" in other_size.json()["message"] and "set the input size to 24" in other_size.json()["message"]
    started = launch(api, partition, {"architecture": "imported", "weights": "imported", "imported_model": converted.pk,
                                      "input_size": 24})
    assert started.status_code == 202, started.content
    unknown = launch(api, partition, {"architecture": "small_cnn", "weights": "imported", "imported_model": 999_999})
    assert unknown.status_code == 400 and unknown.json()["field"] == "model.imported_model"
    not_imported = launch(api, partition, {"architecture": "imported", "weights": "random"})
    assert not_imported.status_code == 400 and not_imported.json()["field"] == "model.architecture"


def test_an_import_stops_at_once_while_queued_and_after_its_step_while_running(api, project, files, monkeypatch, outsider):
    from rest_framework.test import APIClient

    import workers.model_import as model_import

    queued = upload(api, project, "small_cnn.safetensors", files["safetensors"].read_bytes(), architecture="small_cnn").json()
    stranger = APIClient()
    stranger.force_authenticate(outsider)
    assert stranger.post(f"/api/imported-models/{queued['id']}/stop/").status_code == 404
    stopped = api.post(f"/api/imported-models/{queued['id']}/stop/")
    assert stopped.status_code == 202 and stopped.json()["status"] == "stopped" and stopped.json()["finished"]
    again = api.post(f"/api/imported-models/{queued['id']}/stop/")
    assert again.status_code == 409 and "already ended" in again.json()["message"]

    # Running: the user's Stop lands while the file is checked; the job ends before converting, writing nothing.
    running = upload(api, project, "small_cnn.safetensors", files["safetensors"].read_bytes(), architecture="small_cnn").json()
    checked = model_import.inspect_safetensors

    def stopped_while_checking(*args, **kwargs):
        facts = checked(*args, **kwargs)
        assert api.post(f"/api/imported-models/{running['id']}/stop/").status_code == 202
        return facts

    monkeypatch.setattr(model_import, "inspect_safetensors", stopped_while_checking)
    IMPORT.run(running["id"], "test")
    model = ImportedModel.objects.get(pk=running["id"])
    assert (model.status, model.message, model.trainable) == ("stopped", "Stopped by the user; the model is not usable.", False)
    assert not model.weights_path.exists() and not model.onnx_path.exists() and model.source_path.exists()
    assert api.delete(f"/api/imported-models/{model.pk}/").status_code == 204


def test_deleting_an_imported_model_removes_its_files(api, project, files, django_capture_on_commit_callbacks):
    model = imported(api, project, "branchy.onnx", files["branchy"].read_bytes())
    folder = model.storage_dir
    assert folder.is_dir()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/imported-models/{model.pk}/").status_code == 204
    assert not folder.exists() and not ImportedModel.objects.exists()


def test_a_run_spec_names_the_imported_architecture_only_with_imported_weights():
    spec = training_spec(model={"architecture": "imported", "weights": "imported", "imported_model": 3})
    assert spec["model"] == {"architecture": "imported", "weights": "imported", "input_size": 0, "train_frozen_batchnorm": False,
                             "imported_model": 3}
    assert resolve_spec(spec).to_dict()["model"] == spec["model"], "a resolved spec resolves to itself"
