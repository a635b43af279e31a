"""Writes docs/operations.md from the operation registry."""
from pathlib import Path

from django.core.management.base import BaseCommand

from workers.engine.pipelines.reference import reference_markdown


class Command(BaseCommand):
    help = "Write the reference of every pipeline operation and measure (docs/operations.md by default)."

    def add_arguments(self, parser):
        parser.add_argument("--file", default=str(Path(__file__).resolve().parents[4] / "docs" / "operations.md"))

    def handle(self, *args, file, **options):
        Path(file).write_text(reference_markdown(), encoding="utf-8")
        self.stdout.write(f"wrote {file}")
