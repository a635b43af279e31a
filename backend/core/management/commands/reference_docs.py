"""Writes docs/operations.md and docs/training.md from the registries, and the generated tables of docs/models.md."""
from pathlib import Path

from django.core.management.base import BaseCommand

from workers.engine.pipelines.reference import reference_markdown as operations_markdown
from workers.engine.training.reference import reference_markdown as training_markdown
from workers.engine.zoo.reference import with_zoo_tables

DOCS = Path(__file__).resolve().parents[4] / "docs"
REFERENCES = {"operations.md": operations_markdown, "training.md": training_markdown}
# Pages written by hand around a generated part: each is read from the folder written to, or from docs/ when that
# folder has no copy yet (the test that compares them writes to an empty folder), and its part rewritten.
GENERATED_PARTS = {"models.md": with_zoo_tables}


class Command(BaseCommand):
    help = ("Write the references generated from the registries: pipeline operations and measures, training settings, "
            "and the model zoo's tables in models.md.")

    def add_arguments(self, parser):
        parser.add_argument("--folder", default=str(DOCS))

    def handle(self, *args, folder, **options):
        for name, write in REFERENCES.items():
            (Path(folder) / name).write_text(write(), encoding="utf-8")
            self.stdout.write(f"wrote {Path(folder) / name}")
        for name, rewrite in GENERATED_PARTS.items():
            target = Path(folder) / name
            source = target if target.exists() else DOCS / name
            target.write_text(rewrite(source.read_text(encoding="utf-8")), encoding="utf-8")
            self.stdout.write(f"wrote the generated part of {target}")
