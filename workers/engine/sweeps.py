"""Sweeps over training settings (issue 22, T5): which settings the next runs try, and whether a run that is
doing poorly should stop early. Optuna does both (its samplers and pruners, not ours); this module keeps its
study in a journal file beside the sweep, so that the web process asking for the first trials and the workers
reporting epochs and asking for the next ones share one study, with no tables of Optuna's in our database.

A sweep's search is data (JSON, stored with its group):
    {"sampler": "grid" | "random" | "bayesian", "trials": 12, "parallel": 2,
     "pruner": "none" | "successive_halving" | "median",
     "dimensions": [{"setting": "optimizer.learning_rate", "low": 1e-4, "high": 0.1, "log": true},
                    {"setting": "batch_size", "values": [16, 32, 64]}]}
A dimension either lists its values (a grid's only form) or spans a range [low, high] (on a log scale with
`log`, whole numbers with `integer`). A trial's settings are keyed by the dotted setting (`optimizer.learning_rate`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

SAMPLERS = {"grid": "Grid: every combination of the listed values",
            "random": "Random: settings drawn at random from each range",
            "bayesian": "Bayesian (TPE): each run's settings chosen from how the runs before it did"}
PRUNERS = {"none": "None: every run trains all its epochs",
           "successive_halving": "Successive halving: at epochs m, 3m, 9m ... only the best third of the runs go on",
           "median": "Median: a run stops when it is below the median of earlier runs at the same epoch"}
MOST_DIMENSIONS = 4
MOST_MEMBERS = 200
REDUCTION_FACTOR = 3  # successive halving keeps the best third at each rung
CATEGORICAL_TYPES = (bool, int, float, str)


class SearchInvalid(ValueError):
    """A search that cannot be run; `field` names the part at fault (`trials`, `dimensions.1.low` ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Dimension:
    setting: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return not self.values

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.values:
            return CategoricalDistribution(list(self.values))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def to_dict(self) -> dict:
        if self.values:
            return {"setting": self.setting, "values": list(self.values)}
        return {"setting": self.setting, "low": self.low, "high": self.high, "log": self.log, "integer": self.integer}


@dataclass(frozen=True)
class Search:
    dimensions: tuple[Dimension, ...]
    sampler: str = "bayesian"
    trials: int = 12
    parallel: int = 1
    pruner: str = "successive_halving"

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.dimensions)

    @property
    def members(self) -> int:
        """How many runs the sweep makes at most: every combination of a grid, else `trials`."""
        return self.grid_size if self.sampler == "grid" else self.trials

    def to_dict(self) -> dict:
        return {"sampler": self.sampler, "trials": self.members, "parallel": self.parallel, "pruner": self.pruner,
                "dimensions": [d.to_dict() for d in self.dimensions]}


def parsed_search(data) -> Search:
    """The search as asked, checked; SearchInvalid names the part at fault and says what to do."""
    if not isinstance(data, dict):
        raise SearchInvalid("search", "The search is an object: its sampler, trials and the settings to vary (dimensions).")
    sampler = data.get("sampler", "bayesian")
    if sampler not in SAMPLERS:
        raise SearchInvalid("sampler", f"The sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}.")
    pruner = data.get("pruner", "successive_halving")
    if pruner not in PRUNERS:
        raise SearchInvalid("pruner", f"The pruner must be one of {', '.join(PRUNERS)}; got {pruner!r}.")
    dimensions = parsed_dimensions(data.get("dimensions"), sampler)
    parallel = whole_number(data.get("parallel", 1), "parallel", 1, 16, "Runs at once")
    if sampler == "grid":
        search = Search(dimensions, sampler, 0, parallel, pruner)
        if search.grid_size > MOST_MEMBERS:
            sizes = " × ".join(str(len(d.values)) for d in dimensions)
            raise SearchInvalid("dimensions", f"This grid makes {sizes} = {search.grid_size} runs; a sweep makes at most "
                                              f"{MOST_MEMBERS}. List fewer values, or use the random or Bayesian sampler with a "
                                              "number of trials.")
        return search
    trials = whole_number(data.get("trials", 12), "trials", 1, None, "Trials")
    if trials > MOST_MEMBERS:
        raise SearchInvalid("trials", f"A sweep makes at most {MOST_MEMBERS} runs; {trials} were asked. Ask for fewer trials, "
                                      "or sweep fewer settings.")
    return Search(dimensions, sampler, trials, parallel, pruner)


def whole_number(value, field: str, lowest: int, highest: int | None, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest or (highest is not None and value > highest):
        span = f"{lowest} to {highest}" if highest is not None else f"at least {lowest}"
        raise SearchInvalid(field, f"{label} must be a whole number, {span}; got {value!r}.")
    return value


def parsed_dimensions(data, sampler: str) -> tuple[Dimension, ...]:
    if not isinstance(data, list) or not data:
        raise SearchInvalid("dimensions", "Choose at least one setting to vary: a sweep of one fixed spec is a single run "
                                          "(or repeat it with seeds).")
    if len(data) > MOST_DIMENSIONS:
        raise SearchInvalid("dimensions", f"A sweep varies at most {MOST_DIMENSIONS} settings; {len(data)} were given.")
    dimensions = tuple(parsed_dimension(entry, k, sampler) for k, entry in enumerate(data))
    settings = [d.setting for d in dimensions]
    twice = next((s for s in settings if settings.count(s) > 1), None)
    if twice:
        raise SearchInvalid(f"dimensions.{settings.index(twice, settings.index(twice) + 1)}.setting",
                            f"'{twice}' is varied twice; give each setting once, with all its values.")
    return dimensions


def parsed_dimension(data, k: int, sampler: str) -> Dimension:
    where = f"dimensions.{k}"
    if not isinstance(data, dict) or not isinstance(data.get("setting"), str) or not data["setting"].strip():
        raise SearchInvalid(f"{where}.setting", "Each varied setting names the setting (e.g. optimizer.learning_rate).")
    setting = data["setting"].strip()
    if "values" in data:
        return Dimension(setting, values=listed_values(data["values"], f"{where}.values", setting))
    if sampler == "grid":
        raise SearchInvalid(f"{where}.values", f"A grid lists the values of each setting; give {setting} a list of values "
                                               "(or use the random or Bayesian sampler for a range).")
    return ranged(data, where, setting)


def listed_values(values, field: str, setting: str) -> tuple:
    if not isinstance(values, list) or len(values) < 2:
        raise SearchInvalid(field, f"List at least two values of {setting} to compare.")
    if not all(isinstance(v, CATEGORICAL_TYPES) for v in values):
        raise SearchInvalid(field, f"The values of {setting} must be numbers, words or true/false.")
    if len({(type(v), v) for v in values}) < len(values):
        raise SearchInvalid(field, f"A value of {setting} is listed twice.")
    return tuple(values)


def ranged(data: dict, where: str, setting: str) -> Dimension:
    low, high = data.get("low"), data.get("high")
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SearchInvalid(f"{where}.{name}", f"Give {setting} a range: low and high, numbers (or list its values).")
    if not low < high:
        raise SearchInvalid(f"{where}.high", f"The range of {setting} must have high above low ({low:g} to {high:g}).")
    log, integer = bool(data.get("log", False)), bool(data.get("integer", False))
    if log and low <= 0:
        raise SearchInvalid(f"{where}.low", f"A log-scale range of {setting} must start above 0; it starts at {low:g}.")
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise SearchInvalid(f"{where}.low", f"A range of whole numbers of {setting} needs whole-number ends.")
    return Dimension(setting, low=int(low) if integer else float(low), high=int(high) if integer else float(high),
                     log=log, integer=integer)


# ------------------------------------------------------------------ the study


class Study:
    """One sweep's Optuna study in its journal file. Trials are known by their number (the order they were asked)."""

    def __init__(self, journal: Path, search: Search, direction: str, epochs: int, seed: int, name: str = "sweep"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the run's own log says what happened, in words
        self.optuna = optuna
        self.search, self.direction, self.epochs, self.seed = search, direction, epochs, seed
        journal.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(journal))
        self.storage = optuna.storages.JournalStorage(backend)
        self.name = name  # one study per journal file
        self.distributions = {d.setting: d.distribution() for d in search.dimensions}

    def loaded(self, asking: bool = False):
        """The study; to ask, with the sweep's sampler seeded by how many trials it has (every process that asks
        draws anew, and the same history gives the same draw). Otherwise with a sampler that does nothing after a
        trial: Optuna's grid sampler stops the study once every combination has ended, which only an optimisation
        loop of its own can take."""
        study = self.optuna.create_study(study_name=self.name, storage=self.storage, direction=self.direction,
                                         load_if_exists=True, pruner=self.pruner(),
                                         sampler=self.optuna.samplers.RandomSampler(seed=self.seed))
        if asking:
            study.sampler = self.sampler(len(study.get_trials(deepcopy=False)))
        return study

    def sampler(self, asked: int):
        seed = self.seed + asked
        samplers = self.optuna.samplers
        if self.search.sampler == "grid":
            # one seed for the sweep: the grid sampler numbers the combinations by a shuffle of that seed, and finds in
            # the study which numbers were tried
            return samplers.GridSampler({d.setting: list(d.values) for d in self.search.dimensions}, seed=self.seed)
        if self.search.sampler == "random":
            return samplers.RandomSampler(seed=seed)
        # TPE's first trials are random (its startup); a short sweep learns from half of them at most
        startup = max(2, min(10, self.search.members // 2))
        return samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)

    def pruner(self):
        pruners = self.optuna.pruners
        first = max(1, self.epochs // REDUCTION_FACTOR ** 2)  # rungs at first, 3x and 9x: the last near the run's end
        if self.search.pruner == "successive_halving":
            return pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=REDUCTION_FACTOR)
        if self.search.pruner == "median":
            return pruners.MedianPruner(n_startup_trials=max(2, self.search.parallel), n_warmup_steps=first)
        return pruners.NopPruner()

    def ask(self, settings: dict | None = None) -> tuple[int, dict]:
        """A new trial: (its number, its settings). `settings` asks for these again (a crashed trial's re-run)."""
        study = self.loaded(asking=True)
        if settings is not None:
            study.enqueue_trial(settings, skip_if_exists=False)
        trial = study.ask(self.distributions)
        return trial.number, dict(trial.params)

    def report(self, number: int, epoch: int, value: float) -> bool:
        """The trial's objective after `epoch`; True when the pruner says it should stop. A value already reported for
        that epoch (a resumed run) is kept as it was."""
        study = self.loaded()
        trial = self.trial(study, number)
        if epoch in trial.intermediate_values or trial.state != self.optuna.trial.TrialState.RUNNING:
            return False
        study_id = self.storage.get_study_id_from_name(self.name)
        live = self.optuna.trial.Trial(study, self.storage.get_trial_id_from_study_id_trial_number(study_id, number))
        live.report(float(value) if math.isfinite(value) else float("nan"), epoch)
        prune = live.should_prune()  # asked at every epoch: successive halving records each rung's value as it goes
        return prune and self.past_startup(study)

    @property
    def startup(self) -> int:
        """Trials that must have completed before any is pruned: Optuna's successive halving compares a trial with those
        that reached its rung, and with one or two there, it keeps only the best of them (a new trial must beat the
        first one's early epochs). A third of the trials, one to five, first train to the end."""
        return max(1, min(5, self.search.members // 3))

    def past_startup(self, study) -> bool:
        complete = self.optuna.trial.TrialState.COMPLETE
        return sum(t.state == complete for t in study.get_trials(deepcopy=False)) >= self.startup

    def tell(self, number: int, outcome: str, value: float | None = None) -> None:
        """The trial's end: "complete" with its value, "pruned" or "failed". Told once; a second telling is ignored."""
        study = self.loaded()
        states = self.optuna.trial.TrialState
        if self.trial(study, number).state != states.RUNNING:
            return
        if outcome == "complete" and value is not None and math.isfinite(value):
            study.tell(number, value)
        elif outcome == "pruned":
            study.tell(number, state=states.PRUNED)
        else:
            study.tell(number, state=states.FAIL)

    @staticmethod
    def trial(study, number: int):
        return next(t for t in study.get_trials(deepcopy=False) if t.number == number)
