"""The learning-rate search job: the run form's settings on a partition, swept by the engine's finder.

The training images are read as a run with these settings would read them (`training_data`: the same
subset, augmentation and balancing). A worker lost mid-search queues it again (the default): a sweep
is short and starts over.
"""
from __future__ import annotations

from django.db.models import F

from backend.runs.models import RateSearch
from workers.engine.training.finder import EARLY_ENDINGS, find_learning_rate
from workers.engine.training.spec import resolve_spec
from workers.engine.zoo.weights import WeightsUnavailable

from .jobs import JobRunner, register
from .starting_weights import model_start
from .training import training_data

Status = RateSearch.Status


class RateSearchJob(JobRunner):
    model = RateSearch
    task = "workers.tasks.search_learning_rate"
    noun = "learning-rate search"
    queue = "train-cpu"  # only a default: each is sent to its own queue (queue_of)

    def work(self, search: RateSearch, reporter) -> None:
        search = RateSearch.objects.select_related("partition__dataset", "augmentation").get(pk=search.pk)
        data, _ = training_data(search, reporter)
        found = find_learning_rate(resolve_spec(search.spec), data, reporter, start=model_start(search))
        status, message = ending(found)
        fields = {"results": found}
        if status == Status.DONE:
            fields["progress_done"] = F("progress_total")
        self.finish(search, status, message, **fields)

    def failure_message(self, exc: Exception) -> str:
        if isinstance(exc, WeightsUnavailable):
            return str(exc)
        return f"The learning-rate search failed ({type(exc).__name__}: {exc}); the worker log has the details."


SEARCH = register(RateSearchJob())


def ending(found: dict) -> tuple[str, str]:
    """The search's status and its message in words: the suggestion, and why the sweep ended where it did."""
    rates, why, suggestion = found["rates"], found["stopped_early_because"], found["suggestion"]
    swept = f"{len(rates)} rates from {rates[0]:.0e} to {rates[-1]:.2g}" if rates else "no rate"
    if why == "stopped":
        return Status.STOPPED, f"Stopped by the user after {swept}; the curve so far is kept."
    ended = f"; then {EARLY_ENDINGS[why]}" if why else ""
    if suggestion is None:
        return Status.DONE, (f"Tried {swept}{ended}. The loss never clearly fell, so no rate is suggested: check the "
                             "labels, or try another model, loss or batch size.")
    return Status.DONE, f"Suggested learning rate: {suggestion:.2g}, halfway down the loss's fall. Tried {swept}{ended}."
