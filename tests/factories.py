"""Real objects for tests: a ready dataset whose samples have pixels on disk, as an ingest leaves them."""
import hashlib

import numpy as np

from backend.datasets.models import Dataset, Sample
from workers.engine.demo import demo_image


def ready_dataset(project, labels=("lesion", "normal"), per_class=10, size=64, name="Ready") -> Dataset:
    dataset = Dataset.objects.create(project=project, name=name, status=Dataset.Status.READY, sample_count=len(labels) * per_class,
                                     class_counts={label: per_class for label in labels}, channels=1, height=size, width=size,
                                     modalities="PNG")
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(dataset.pk)
    samples = []
    for n, label in enumerate(labels):
        for i in range(per_class):
            index = n * per_class + i
            np.save(arrays / f"{index:07d}.npy", demo_image(rng, label == "lesion", size))
            samples.append(Sample(
                dataset=dataset, source_dataset=dataset, label=label, source_path=f"{label}/{i}.png",
                files=[f"{label}/{i}.png"], array=f"datasets/{dataset.pk}/arrays/{index:07d}.npy", cache_index=index,
                width=size, height=size, channels=1, dtype="uint8", modality="PNG", patient=f"P-{index // 2:04d}",
                sha256=hashlib.sha256(f"{dataset.pk} {label} {i}".encode()).hexdigest(),  # thumbnails are named by it
            ))
    Sample.objects.bulk_create(samples)
    return dataset


def volumes_with_masks(project, masked_voxels=((40, 120), (300,)), spacing=(2.0, 0.5, 0.5), shape=(6, 16, 16)) -> Dataset:
    """A segmentation dataset of CT-like volumes; masked_voxels gives, per label, how many voxels each sample's mask holds.

    Intensities are known (mask voxels 100 HU, the rest -50), so means and volumes can be checked by hand.
    The last sample of the last label has no mask.
    """
    labels = [f"grade-{n}" for n in range(len(masked_voxels))]
    count = sum(len(v) for v in masked_voxels) + 1
    dataset = Dataset.objects.create(project=project, name="Volumes", status=Dataset.Status.READY, sample_count=count,
                                     task=Dataset.Task.SEGMENTATION, channels=1, height=shape[1], width=shape[2], modalities="CT")
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    plan = [(label, voxels) for label, group in zip(labels, masked_voxels) for voxels in group] + [(labels[-1], None)]
    samples = []
    for index, (label, voxels) in enumerate(plan):
        mask = np.zeros(shape, dtype=np.uint8)
        mask.reshape(-1)[: voxels or 0] = 1
        volume = np.where(mask > 0, 100, -50).astype(np.int16)
        np.save(arrays / f"{index:07d}.npy", volume)
        mask_path = ""
        if voxels is not None:
            np.save(arrays / f"{index:07d}-mask.npy", mask)
            mask_path = f"datasets/{dataset.pk}/arrays/{index:07d}-mask.npy"
        samples.append(Sample(
            dataset=dataset, source_dataset=dataset, label=label, kind=Sample.Kind.VOLUME, modality="CT",
            source_path=f"{label}/{index}", files=[f"{label}/{index}"], array=f"datasets/{dataset.pk}/arrays/{index:07d}.npy",
            mask=mask_path, depth=shape[0], height=shape[1], width=shape[2], channels=1, dtype="int16", spacing=list(spacing),
            patient=f"P-{index:04d}", sha256=f"{dataset.pk:08d}v{index:055d}"[:64]))
    Sample.objects.bulk_create(samples)
    dataset.class_counts = {label: sum(1 for lab, _ in plan if lab == label) for label in labels}
    dataset.save(update_fields=["class_counts"])
    return dataset


def training_spec(**settings) -> dict:
    """A resolved training spec, the defaults with these settings on top (what a run stores)."""
    from workers.engine.training.spec import resolve_spec

    return resolve_spec(settings).to_dict()


def with_training_cache(dataset: Dataset) -> Dataset:
    """The training cache an ingest builds, from the samples' own pixels: runs and searches on it learn something."""
    arrays = [np.load(dataset.storage_dir / "arrays" / f"{sample.cache_index:07d}.npy") for sample in dataset.samples.order_by("cache_index")]
    dataset.cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(dataset.cache_path, np.stack(arrays)[:, None])
    return dataset


def shapes_with_masks(project, count=24, size=64, name="Shapes", label_names=None) -> Dataset:
    """A ready 2D segmentation dataset as an ingest of PNG image/mask pairs leaves it: the demo's shapes
    (workers/engine/demo.py: 0 background, 1 disc, 2 square) in 16-bit intensities, each with its mask, one patient each,
    with the fingerprint its job stores (so the plan is there)."""
    from backend.datasets.planning import fingerprint_of_samples
    from workers.engine.demo import shapes_image

    dataset = Dataset.objects.create(project=project, name=name, status=Dataset.Status.READY, sample_count=count,
                                     task=Dataset.Task.SEGMENTATION, class_counts={"": count}, channels=1, height=size,
                                     width=size, modalities="PNG", masked_count=count, mask_values=[0, 1, 2],
                                     label_names=label_names or {})
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(dataset.pk)
    samples = []
    for index in range(count):
        image, mask = shapes_image(rng, size)
        np.save(arrays / f"{index:07d}.npy", image)
        np.save(arrays / f"{index:07d}-mask.npy", mask)
        samples.append(Sample(
            dataset=dataset, source_dataset=dataset, label="", source_path=f"images/{index}.png", files=[f"images/{index}.png"],
            array=f"datasets/{dataset.pk}/arrays/{index:07d}.npy", mask=f"datasets/{dataset.pk}/arrays/{index:07d}-mask.npy",
            cache_index=index, width=size, height=size, channels=1, dtype="int16", modality="PNG", spacing=[1.0, 1.0],
            patient=f"P-{index:04d}", meta={"mask_values": sorted(int(v) for v in np.unique(mask))},
            sha256=hashlib.sha256(f"{dataset.pk} shape {index}".encode()).hexdigest()))
    Sample.objects.bulk_create(samples)
    dataset.fingerprint = fingerprint_of_samples(list(dataset.samples.select_related("dataset__project")))
    dataset.save(update_fields=["fingerprint"])
    return dataset


def segmentation_run(project, data: bytes, name: str, labels=("tissue", "bright"), percentiles=(60, 85), modality="NIfTI"):
    """A succeeded segmentation run whose dataset holds the file `data` (named `name`) as its one sample, stored as an
    ingest stores an upload (the ingest's readers, the same SHA-256) with a mask of its intensities above each
    percentile (label 1 above the first, 2 above the second, ...), planned by the engine from that sample, and whose
    kept model is a seeded, untrained network of the spec's architecture (its weights at run.weights_path): the path
    from an upload to a downloaded mask, without an hour of training."""
    import torch

    from backend.datasets.models import Partition
    from backend.runs.models import TrainingRun
    from workers.engine.planning import VolumeFacts, fingerprint_of, plan_for
    from workers.engine.uploaded import decoded_upload, kind_and_channels
    from workers.engine.zoo.start import ModelStart, starting_model

    decoded = decoded_upload(data, name)
    kind, _ = kind_and_channels(decoded.pixels, decoded.kind)
    pixels = np.asarray(decoded.pixels)
    mask = sum((pixels > np.percentile(pixels, p)).astype(np.uint8) for p in percentiles).astype(np.uint8)
    meta = dict(decoded.meta)
    spacing = [float(v) for v in (meta.get("voxel_spacing") or meta.get("pixel_spacing") or [])]
    dims = 3 if kind == "volume" else 2
    dataset = Dataset.objects.create(project=project, name=f"Masks of {name}", status=Dataset.Status.READY, sample_count=1,
                                     task=Dataset.Task.SEGMENTATION, channels=1, height=pixels.shape[-2], width=pixels.shape[-1],
                                     modalities=modality, mask_values=list(range(1, len(labels) + 1)),
                                     label_names={str(n): label for n, label in enumerate(labels, start=1)})
    arrays = dataset.storage_dir / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)
    np.save(arrays / "0000000.npy", pixels)
    np.save(arrays / "0000000-mask.npy", mask)
    relative = f"datasets/{dataset.pk}/arrays"
    Sample.objects.create(dataset=dataset, source_dataset=dataset, label="", kind=Sample.Kind.VOLUME if dims == 3 else Sample.Kind.IMAGE,
                          modality=decoded.modality or decoded.format, source_path=name, files=[name],
                          array=f"{relative}/0000000.npy", mask=f"{relative}/0000000-mask.npy",
                          depth=pixels.shape[0] if dims == 3 else 1, height=pixels.shape[-2], width=pixels.shape[-1], channels=1,
                          dtype=str(pixels.dtype), spacing=spacing, meta=meta, patient="P-0001",
                          sha256=hashlib.sha256(data).hexdigest())
    partition = Partition.objects.create(dataset=dataset, name="all", train_percent=100, validation_percent=0, test_percent=0, seed=1)
    plan = plan_for(fingerprint_of([VolumeFacts(lambda: pixels, tuple(spacing or [1.0] * dims), {}, modality,
                                                lambda: mask, dims=dims)]))
    spec = training_spec(task="segmentation", data={"plan": plan}, epochs=1)
    classes = ["background", *labels]
    run = TrainingRun.objects.create(project=project, partition=partition, name=f"Segment {name}", spec=spec, status="succeeded",
                                     results={"classes": classes, "input_shape": [1, *plan["patch_size"]]})
    run.storage_dir.mkdir(parents=True, exist_ok=True)
    model = starting_model(spec["model"], 1, len(classes), ModelStart(), seed=spec["seed"], classes=classes, plan=plan)
    torch.save(model.state_dict(), run.weights_path)
    return run
