"""Writes docs/operations.md and docs/training.md from the registries."""
from pathlib import Path

from django.core.management.base import BaseCommand

from workers.engine.pipelines.reference import reference_markdown as operations_markdown
from workers.engine.training.reference import reference_markdown as training_markdown

REFERENCES = {"operations.md": operations_markdown, "training.md": training_markdown}


class Command(BaseCommand):
    help = "Write the references generated from the registries: pipeline operations and measures, training settings."

    def add_arguments(self, parser):
        parser.add_argument("--folder", default=str(Path(__file__).resolve().parents[4] / "docs"))

    def handle(self, *args, folder, **options):
        for name, write in REFERENCES.items():
            (Path(folder) / name).write_text(write(), encoding="utf-8")
            self.stdout.write(f"wrote {Path(folder) / name}")
