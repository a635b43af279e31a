"""Real objects for tests: a ready dataset whose samples have pixels on disk, as an ingest leaves them."""
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
                sha256=f"{dataset.pk:08d}{label}{i:056d}"[:64],
            ))
    Sample.objects.bulk_create(samples)
    return dataset
