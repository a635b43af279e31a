"""The training spec: every setting of a run as data (JSON), checked and resolved through the registries.

`resolve_spec(data)` fills in the defaults (the chosen architecture's, then the toolkit's), checks
every field and returns a `TrainingSpec`; whatever is wrong comes back at once as `SpecInvalid`,
one message per field, named by its path ("optimizer.momentum", "phases.1.epochs"). The resolved
dict (`spec.to_dict()`) is what a run stores, shows and clones; resolving it again gives it back.
Checks that need the database (a GPU online, the partition's size) are the backend's.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

from ..params import Configurable, Param, ParamError
from ..planning import check_plan, fitted_to_network
from ..tasks import METRICS, TASKS, metrics_of
from ..zoo.registry import MODELS
from .losses import LOSSES, Loss
from .optimizers import OPTIMIZERS, Optimizer
from .schedules import SCHEDULES, Plateau, Schedule

PRECISIONS = ("auto", "float32", "mixed")
BALANCING = ("none", "weighted", "oversample", "factors")
PHASE_TRAINING = ("all", "head")
MAX_PHASES = 10
POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")

DEFAULTS = {
    "task": "classification",
    "model": {"architecture": "small_cnn", "weights": "random"},
    "epochs": 20,
    "batch_size": 32,
    "optimizer": {"name": "adamw"},
    "loss": {"name": "cross_entropy"},
    "schedule": {"name": "cosine", "warmup_epochs": 1},
    "phases": [],
    "metrics": ["accuracy"],
    "monitor": "validation.loss",
    "early_stopping": {"enabled": False},
    "gradient_clipping": 0.0,
    "precision": "auto",
    "seed": 0,
    "checkpoints": {},
    "resources": {},
    "data": {},
    "inference": {},
}
CHOSEN_BY_NAME = ("optimizer", "loss", "schedule")  # sections whose parameters depend on the chosen "name"
REGISTRIES = {"optimizer": OPTIMIZERS, "loss": LOSSES, "schedule": SCHEDULES}


class Section(Configurable):
    """A fixed group of settings (no choice of class), checked like a registry entry's parameters."""


WEIGHT_SOURCES = ("random", "imagenet", "medicalnet", "run", "imported")
IMPORTED_ARCHITECTURE = "imported"  # an imported model converted from ONNX (not a zoo network): model.weights "imported"


class ModelSection(Section):
    name, title = "model", "Model"
    params = (Param("architecture", "choice", "small_cnn", "The network to train.", choices=tuple(MODELS)),
              Param("weights", "choice", "random", "Where the weights start from: random, ImageNet (torchvision's), "
                                                   "MedicalNet's (the 3D ResNets), an earlier run's model, or an imported model.", choices=WEIGHT_SOURCES),
              Param("input_size", "int", 0, "Images are resized to this many pixels a side inside the network (so in the "
                                            "exported file too); 0: the images' own size.", 0, 1024),
              Param("train_frozen_batchnorm", "bool", False, "Let BatchNorm layers inside frozen blocks keep learning "
                                                            "(their statistics and scales); off: they stay as they were."))

    def __init__(self, **values):
        self.start_run = values.pop("start_run", None)
        self.imported_model = values.pop("imported_model", None)
        # "imported": a network converted from an imported ONNX file (not a zoo network), only with weights "imported"
        self.converted = values.get("architecture") == IMPORTED_ARCHITECTURE
        if self.converted:
            values = {key: value for key, value in values.items() if key != "architecture"}
        super().__init__(**values)
        if self.converted:
            self.architecture = IMPORTED_ARCHITECTURE

    def check(self):
        if self.converted and self.weights != "imported":
            raise ParamError("architecture", f"The architecture '{IMPORTED_ARCHITECTURE}' is an imported model converted from ONNX: "
                                             "it starts from that model (weights 'imported' and its id in model.imported_model).")
        entry = None if self.converted else MODELS[self.architecture]
        if entry and self.weights not in ("random", "run", "imported") and self.weights not in entry.weight_choices:
            raise ParamError("weights", f"{entry.title} has no {self.weights} weights{having(self.weights, entry.dims)}; start "
                                        f"from {' or '.join(c for c in entry.weight_choices)}, an earlier run or an imported model.")
        for source, key, what in (("run", "start_run", "run"), ("imported", "imported_model", "imported model")):
            value = getattr(self, key)
            if self.weights == source and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ParamError(key, f"Starting from an earlier {what} needs its id in model.{key}.")
            if self.weights != source and value is not None:
                raise ParamError(key, f"model.{key} applies only when the weights are '{source}'.")
        if entry and self.input_size and entry.size_problem(self.input_size, self.input_size):
            raise ParamError("input_size", f"{entry.size_problem(self.input_size, self.input_size)}: choose an input size of "
                                           f"{entry.accepted_sizes()} (0: the images' own size).")

    def values(self):
        extra = {"start_run": self.start_run} if self.weights == "run" else {"imported_model": self.imported_model} if self.weights == "imported" else {}
        return {**super().values(), **extra}


def having(weights: str, dims: int) -> str:
    """Which networks have these pretrained weights (" (only …)"), for a refusal; "" for the many with ImageNet's."""
    networks = [entry for entry in MODELS.values() if entry.weights_named(weights)]
    if not networks or weights == "imagenet":
        return ""
    other_dims = {entry.dims for entry in networks} - {dims}
    kind = f"{other_dims.pop()}D networks " if other_dims and all(entry.dims != dims for entry in networks) else ""
    return f" (only the {kind}{', '.join(entry.title for entry in networks)} have)"


class EarlyStoppingSection(Section):
    name, title = "early_stopping", "Early stopping"
    params = (Param("enabled", "bool", False, "End the run once the monitored metric stops improving (the best epoch is kept "
                                             "either way)."),
              Param("patience", "int", 10, "Epochs without improvement before the run ends.", 1, 1000),
              Param("min_delta", "float", 0.0, "The smallest change that counts as an improvement.", 0.0, 1e6))


class CheckpointSection(Section):
    name, title = "checkpoints", "Checkpoints"
    params = (Param("every_minutes", "int", 10, "Besides the one after every epoch, a checkpoint during long epochs every this "
                                               "many minutes (0: only after epochs).", 0, 1440),)


class ResourceSection(Section):
    name, title = "resources", "Resources"
    params = (Param("device", "choice", "cpu", "Train on a CPU worker or a GPU worker.", choices=("cpu", "gpu")),
              Param("processes", "int", 1, "Data-parallel processes on one worker (one per GPU, or CPU processes); each trains "
                                           "on its shard of the training images, so the batch size is per process.", 1, 16),
              Param("pool", "text", "", "A named pool of workers (its queue is train-<device>-<pool>); empty: any worker of "
                                        "the device."))

    def __init__(self, **values):
        pool = values.pop("pool", "")
        super().__init__(**values)
        if pool not in ("", None) and not (isinstance(pool, str) and POOL_NAME.match(pool)):
            raise ParamError("pool", "A pool name is lower-case letters, digits and dashes (up to 40), e.g. 'a100'.")
        self.pool = pool or ""


class DataSection(Section):
    name, title = "data", "Data"
    params = (Param("balancing", "choice", "none", "For datasets where a class is much rarer: weighted sampling draws every "
                                                   "class equally often; oversampling repeats the smaller classes; factors "
                                                   "use each image of a class N times per epoch.", choices=BALANCING),)

    def __init__(self, **values):
        self.class_factors = values.pop("class_factors", None) or {}
        self.augmentation = values.pop("augmentation", None)
        # Volumes: the dataset's plan (planning.py), filled in at launch from the dataset's fingerprint unless given;
        # None for 2D images.
        self.plan = values.pop("plan", None)
        super().__init__(**values)

    def check(self):
        if not isinstance(self.class_factors, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 20
                for k, v in self.class_factors.items()):
            raise ParamError("class_factors", "Class factors are {class: times per epoch}, each a whole number from 1 to 20.")
        if self.balancing == "factors" and not self.class_factors:
            raise ParamError("class_factors", "Give a factor for at least one class, e.g. {\"pneumonia\": 3}.")
        if self.balancing != "factors" and self.class_factors:
            raise ParamError("class_factors", "Class factors apply only when balancing is 'factors'.")
        if self.augmentation is not None and not isinstance(self.augmentation, int | dict):
            raise ParamError("augmentation", "The augmentation is a pipeline's id, or none.")
        if self.plan is not None:
            if not isinstance(self.plan, dict):
                raise ParamError("plan", "The plan is an object of settings (target_spacing, normalisation, patch_size ...).")
            for field, message in check_plan(self.plan).items():
                raise ParamError(f"plan.{field}", message)

    def values(self):
        plan = {"plan": self.plan} if self.plan is not None else {}
        return {**super().values(), "class_factors": self.class_factors, "augmentation": self.augmentation, **plan}


class InferenceSection(Section):
    name, title = "inference", "Inference"
    params = (Param("mirror", "bool", False, "Test-time mirroring (segmentation, as nnU-Net): the test subset's and "
                                             "evaluations' whole samples are also predicted mirrored along their axes and "
                                             "the probabilities averaged; a little more accurate, 2^axes times slower (8 "
                                             "for volumes). The validation after each epoch is not mirrored."),)

    def __init__(self, **values):
        # The spatial axes to mirror along (0 the first: a volume's slices, an image's rows); None: all of them.
        self.mirror_axes = values.pop("mirror_axes", None)
        super().__init__(**values)

    def check(self):
        axes = self.mirror_axes
        if axes is not None and not (isinstance(axes, list) and axes and len(set(axes)) == len(axes) and all(
                isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= 2 for a in axes)):
            raise ParamError("mirror_axes", "The mirror axes are a list of distinct spatial axes, 0 to 2 (0: a volume's "
                                            "slices or an image's rows), e.g. [1, 2]; leave them out to mirror along all.")
        if axes is not None and not self.mirror:
            raise ParamError("mirror_axes", "Mirror axes apply only with mirror on: turn mirror on or leave the axes out.")

    def values(self):
        axes = {"mirror_axes": self.mirror_axes} if self.mirror_axes is not None else {}
        return {**super().values(), **axes}


SECTIONS = {section.name: section for section in (ModelSection, EarlyStoppingSection, CheckpointSection, ResourceSection,
                                                  DataSection, InferenceSection)}
TOP_LEVEL = (
    Param("task", "choice", "classification", "What the model learns: one class per image or volume (classification), or "
                                              "a label per pixel or voxel (segmentation).", choices=tuple(TASKS)),
    Param("epochs", "int", 20, "Passes over the training images.", 1, 1000),
    Param("batch_size", "int", 32, "Images per training step (per process).", 1, 4096, typical="16 to 128 is usual"),
    Param("gradient_clipping", "float", 0.0, "Caps the size of each update's gradient (its norm); 0: no cap. 1 to 5 steadies "
                                             "training that spikes.", 0.0, 1000.0),
    Param("precision", "choice", "auto", "Mixed precision computes in 16-bit floats: about twice as fast on recent GPUs. Auto: "
                                         "mixed on a GPU, 32-bit on a CPU.", choices=PRECISIONS),
    Param("seed", "int", 0, "Same seed and settings, same result.", 0, 2**31 - 1),
)
PHASE_PARAMS = (
    Param("epochs", "int", 5, "Epochs of this phase.", 1, 1000),
    Param("learning_rate", "float", 0.001, "This phase's learning rate (empty: the optimizer's).", maximum=10.0, above=0.0),
    Param("train", "choice", "all", "What trains: the whole network, or only its head (the rest frozen, BatchNorm "
                                    "statistics included).", choices=PHASE_TRAINING),
    Param("frozen_blocks", "int", 0, "When the whole network trains: keep its first n blocks frozen (the zoo page lists "
                                     "each network's blocks).", 0, 50),
    Param("layer_rate_ratio", "float", 1.0, "Discriminative learning rates: the head learns at the phase's rate, the first "
                                            "block at the rate divided by this, the blocks between evenly in between (on a "
                                            "log scale); 1: one rate for all.", 1.0, 1e6, typical="fastai's fine_tune uses 100"),
)


class SpecInvalid(ValueError):
    """Settings that cannot make a run: {field path: what is wrong and what to do}."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Phase:
    epochs: int
    learning_rate: float
    train: str
    first_epoch: int  # 1-based
    frozen_blocks: int = 0
    layer_rate_ratio: float = 1.0


@dataclass(frozen=True)
class TrainingSpec:
    settings: dict
    optimizer: Optimizer
    loss: Loss
    schedule: Schedule
    phases: tuple[Phase, ...]

    def __getitem__(self, key):
        return self.settings[key]

    def to_dict(self) -> dict:
        return copy.deepcopy(self.settings)

    @property
    def epochs(self) -> int:
        return self.settings["epochs"]

    @property
    def monitored(self) -> tuple[str, str, bool]:
        """(subset, metric, higher is better) of the metric that picks the kept epoch."""
        subset, metric = self.settings["monitor"].split(".", 1)
        return subset, metric, metric != "loss" and METRICS[metric].higher_is_better

    @property
    def freezes(self) -> bool:
        """Whether some phase leaves part of the network untrained."""
        return any(phase.train == "head" or phase.frozen_blocks for phase in self.phases)

    def mirror_axes(self, dims: int) -> tuple[int, ...]:
        """The spatial axes whole samples are also predicted mirrored along (`inference`); () without mirroring."""
        inference = self.settings["inference"]
        if not inference["mirror"]:
            return ()
        return tuple(inference.get("mirror_axes") or range(dims))

    def phase_at(self, epoch: int) -> Phase:
        """The phase a 1-based epoch belongs to."""
        return next(phase for phase in reversed(self.phases) if epoch >= phase.first_epoch)

    def learning_rate(self, epoch: int, step_in_epoch: int, steps_per_epoch: int, plateau: Plateau | None = None) -> float:
        """The rate of a training step, by its place in its phase: the trainer's and the curve's one source."""
        phase = self.phase_at(epoch)
        step = (epoch - phase.first_epoch) * steps_per_epoch + step_in_epoch
        return phase.learning_rate * self.schedule.factor(step, steps_per_epoch, phase.epochs * steps_per_epoch, plateau)

    def rate_curve(self, steps_per_epoch: int, points: int = 400) -> dict:
        """The planned rate along the run, at most `points` points: x in epochs (fractional), y the rate."""
        total = self.epochs * steps_per_epoch
        stride = max(1, total // points)
        steps = [*range(0, total, stride), total - 1]
        epochs = [step / steps_per_epoch for step in steps]
        rates = [self.learning_rate(step // steps_per_epoch + 1, step % steps_per_epoch, steps_per_epoch) for step in steps]
        return {"epochs": epochs, "learning_rates": rates, "steps_per_epoch": steps_per_epoch,
                "depends_on_metric": self.schedule.name == "reduce_on_plateau"}


def resolve_spec(data: dict) -> TrainingSpec:
    """The full spec from what a user gave (any subset of the fields), or SpecInvalid."""
    if not isinstance(data, dict):
        raise SpecInvalid({"spec": "The training settings must be a JSON object."})
    errors: dict[str, str] = {}
    unknown = sorted(set(data) - set(DEFAULTS))
    for key in unknown:
        errors[key] = f"There is no setting '{key}'; the settings are {', '.join(DEFAULTS)}."
    merged = merged_with_defaults({k: v for k, v in data.items() if k not in unknown}, errors)
    shorten_default_warmup(merged, data)
    settings: dict = {}
    for param in TOP_LEVEL:
        settings[param.name] = checked(param, merged[param.name], param.name, errors)
    settings["model"] = section_values(ModelSection, merged["model"], "model", errors)
    parts = {}
    for key in CHOSEN_BY_NAME:
        parts[key], settings[key] = chosen_part(key, merged[key], errors)
    for key in ("early_stopping", "checkpoints", "resources", "data", "inference"):
        settings[key] = section_values(SECTIONS[key], merged[key], key, errors)
    settings["metrics"] = metric_names(merged["metrics"], settings["task"], errors)
    check_loss_serves_task(parts.get("loss"), settings["task"], errors)
    fit_patch_to_network(settings, errors)
    check_network_fits(settings, errors)
    check_mirroring(settings, errors)
    settings["monitor"] = monitored_metric(merged["monitor"], settings["metrics"], errors)
    settings["phases"], phases = phase_plan(merged["phases"], data, settings, parts.get("optimizer"), errors)
    if phases and parts.get("schedule"):
        check_schedule_fits(parts["schedule"], phases, errors)
    check_early_stopping(settings, errors)
    if errors:
        raise SpecInvalid(errors)
    settings = {key: settings[key] for key in DEFAULTS}  # one order, the documented one
    return TrainingSpec(settings, parts["optimizer"], parts["loss"], parts["schedule"], tuple(phases))


MIN_STEPS_PER_EPOCH = 8


def fitted_to_subset(data: dict, train_images: int) -> TrainingSpec:
    """The spec for a training subset of `train_images` images. A batch size the user left to the defaults
    gives way so that each process's epoch has at least MIN_STEPS_PER_EPOCH steps (never below 8 images)
    and never exceeds its share of the subset: a tiny set needs steps more than large batches (on 100 of
    scikit-learn's digits, batches of 12 instead of 32 took test accuracy from 0.82 to about 0.86,
    bench/default_settings.py). A batch size the user chose is left as it is."""
    spec = resolve_spec(data)
    if "batch_size" in data:
        return spec
    per_process = math.ceil(train_images / spec["resources"]["processes"])
    batch = max(1, min(spec["batch_size"], per_process, max(8, per_process // MIN_STEPS_PER_EPOCH)))
    return spec if batch == spec["batch_size"] else resolve_spec({**data, "batch_size": batch})


def defaults_for(architecture: str, task: str = DEFAULTS["task"]) -> dict:
    """The toolkit's defaults, the task's on top (segmentation: its loss, metrics and monitored metric), then the
    architecture's own (its rate, epochs, batch size ...)."""
    chosen = MODELS.get(architecture)
    kind = TASKS.get(task)
    return merge(merge(DEFAULTS, {"task": task, **kind.defaults} if kind else {}), chosen.defaults if chosen else {})


def default_architecture(task: str, data: dict) -> str:
    """The network a task starts from when none is named: the task's for the plan's dimensions (2D images unless the
    plan says volumes), else the toolkit's."""
    kind = TASKS.get(task)
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    plan = section.get("plan") if isinstance(section.get("plan"), dict) else {}
    dims = plan.get("dims", 3 if isinstance(plan.get("patch_size"), list) and len(plan["patch_size"]) == 3 else 2)
    return (kind.architectures.get(dims) if kind else None) or DEFAULTS["model"]["architecture"]


def merged_with_defaults(data: dict, errors: dict) -> dict:
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    task = data.get("task", DEFAULTS["task"]) if isinstance(data.get("task"), str) else DEFAULTS["task"]
    architecture = model.get("architecture", default_architecture(task, data))
    defaults = defaults_for(architecture, task)
    defaults["model"]["architecture"] = architecture
    for key in ("model", *CHOSEN_BY_NAME, "early_stopping", "checkpoints", "resources", "data", "inference"):
        if key in data and not isinstance(data[key], dict):
            errors[key] = f"'{key}' must be an object of settings, e.g. {{\"name\": ...}}."
            data = {k: v for k, v in data.items() if k != key}
    for key in CHOSEN_BY_NAME:
        if key in data and data[key].get("name", defaults[key]["name"]) != defaults[key]["name"]:
            defaults = {**defaults, key: {}}  # another optimizer (loss, schedule): the defaults' parameters are not its own
    return merge(defaults, data)


def shorten_default_warmup(merged: dict, data: dict) -> None:
    """A warm-up the user did not ask for is dropped from runs (or phases) too short to hold it: a 1-epoch
    run should not be refused over a default."""
    given = data.get("schedule") if isinstance(data.get("schedule"), dict) else {}
    schedule = merged.get("schedule")
    if "warmup_epochs" in given or not isinstance(schedule, dict) or not isinstance(schedule.get("warmup_epochs"), int):
        return
    lengths = [phase.get("epochs") for phase in merged["phases"] if isinstance(phase, dict)] if isinstance(merged["phases"], list) else []
    lengths = [n for n in lengths if isinstance(n, int)] or [merged["epochs"]]
    if all(isinstance(n, int) for n in lengths) and schedule["warmup_epochs"] >= min(lengths):
        schedule["warmup_epochs"] = 0


def merge(base: dict, over: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else copy.deepcopy(value)
    return merged


def checked(param: Param, value, path: str, errors: dict):
    try:
        return param.clean(value)
    except ParamError as error:
        errors[path] = str(error)
        return param.default


def section_values(section: type[Section], values: dict, path: str, errors: dict) -> dict:
    try:
        return section(**values).values()
    except ParamError as error:
        errors[f"{path}.{error.param}"] = str(error)
        return {}


def chosen_part(key: str, values: dict, errors: dict) -> tuple[Configurable | None, dict]:
    registry = REGISTRIES[key]
    values = dict(values)
    name = values.pop("name", None)
    if name not in registry:
        errors[f"{key}.name"] = f"Choose a {key} among {', '.join(registry)}; '{name}' is not one."
        return None, {"name": name}
    try:
        part = registry[name](**values)
    except ParamError as error:
        errors[f"{key}.{error.param}"] = str(error)
        return None, {"name": name, **values}
    return part, {"name": name, **part.values()}


def metric_names(value, task: str, errors: dict) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors["metrics"] = "Metrics are a list of names, e.g. [\"accuracy\", \"auc\"]."
        return []
    suited = metrics_of(task)
    unknown = [v for v in value if v not in METRICS]
    unsuited = [v for v in value if v in METRICS and v not in suited]
    if unknown:
        errors["metrics"] = f"There is no metric {', '.join(repr(u) for u in unknown)}; choose among {', '.join(suited)}."
    elif unsuited:
        errors["metrics"] = (f"{', '.join(METRICS[v].title for v in unsuited)} cannot measure {task}; choose among "
                             f"{', '.join(suited)}.")
    return list(dict.fromkeys(v for v in value if v in suited))


def check_loss_serves_task(loss: Loss | None, task: str, errors: dict) -> None:
    if loss is not None and task not in loss.tasks:
        serving = [name for name, kind in LOSSES.items() if task in kind.tasks]
        errors["loss.name"] = f"{loss.title} is not a loss for {task}; choose among {', '.join(serving)}."


def fit_patch_to_network(settings: dict, errors: dict) -> None:
    """A segmentation network that takes sides in multiples of a number (a U-Net's 8) gets the plan's patch rounded up
    to them (planning.fitted_to_network), so the run records the patch it trains on; refused where that patch would be
    mostly padding."""
    entry = MODELS.get((settings.get("model") or {}).get("architecture"))
    plan = (settings.get("data") or {}).get("plan")
    if (entry is None or not TASKS[settings["task"]].spatial_output or entry.divisor <= 1 or not isinstance(plan, dict)
            or entry.dims != plan.get("dims", 3) or not patch_problem(entry, plan.get("patch_size"))):
        return
    fitted, problem = fitted_to_network(plan, entry.divisor, entry.min_size, entry.title)
    if problem:
        errors["data.plan.patch_size"] = problem + "."
    settings["data"]["plan"] = fitted


def check_network_fits(settings: dict, errors: dict) -> None:
    """The network must learn what the task asks (a classifier gives one vector per sample, a segmentation network a
    map) and take samples of the plan's dimensions; a segmentation network starts from random weights, an earlier run, or
    an imported file of its weights (not one shaped by the plan: DynUNet)."""
    model, task = settings.get("model") or {}, settings["task"]
    entry = MODELS.get(model.get("architecture"))
    if entry is None or "model.architecture" in errors:
        return
    if entry.task != task:
        fitting = [name for name, other in MODELS.items() if other.task == task and other.dims == entry.dims]
        errors["model.architecture"] = (f"{entry.title} is a {entry.task} network: a {task} run needs a {task} network; "
                                        f"choose among {', '.join(fitting)}.")
        return
    plan = (settings.get("data") or {}).get("plan")
    if task != "classification" and isinstance(plan, dict) and plan.get("dims", 3) != entry.dims:
        fitting = [name for name, other in MODELS.items() if other.task == task and other.dims == plan.get("dims", 3)]
        errors["model.architecture"] = (f"{entry.title} is a {entry.dims}D network and the plan is for "
                                        f"{'volumes (3D)' if plan.get('dims', 3) == 3 else '2D images'}; choose among "
                                        f"{', '.join(fitting)}.")
    elif (task != "classification" and isinstance(plan, dict) and "data.plan.patch_size" not in errors
          and patch_problem(entry, plan.get("patch_size"))):
        errors["model.architecture"] = (f"{patch_problem(entry, plan['patch_size'])}; the plan's patch is "
                                        f"{'×'.join(map(str, plan['patch_size']))}: change the patch size or the network.")
    elif task != "classification" and model.get("weights") == "imported" and entry.planned:
        errors["model.weights"] = (f"{entry.title} is built from the plan, so an imported file of its weights cannot say how "
                                   "to build it: start from the run that trained it, or from random weights.")


def check_mirroring(settings: dict, errors: dict) -> None:
    """Mirroring flips a predicted map: a segmentation's, along axes the samples have."""
    inference = settings.get("inference") or {}
    if not inference.get("mirror") or "inference.mirror_axes" in errors:
        return
    if not TASKS[settings["task"]].spatial_output:
        errors["inference.mirror"] = (f"Test-time mirroring averages predicted maps; a {settings['task']} run predicts "
                                      "one answer per sample: turn mirror off.")
        return
    plan, entry = (settings.get("data") or {}).get("plan"), MODELS.get(settings["model"].get("architecture"))
    dims = plan.get("dims", 3) if isinstance(plan, dict) else entry.dims if entry else 3
    beyond = [axis for axis in inference.get("mirror_axes") or () if axis >= dims]
    if beyond:
        errors["inference.mirror_axes"] = (f"The samples have {dims} spatial axes (0 to {dims - 1}); axis "
                                           f"{beyond[0]} is not one of them: choose among {list(range(dims))}.")


def patch_problem(entry, patch) -> str:
    """Why a network cannot take the plan's patch ("" when it can, or when the patch is not a list of sides)."""
    if not isinstance(patch, list) or len(patch) != entry.dims or not all(isinstance(v, int) for v in patch):
        return ""
    return entry.size_problem(patch[-2], patch[-1], patch[0] if entry.dims == 3 else None)


def monitor_choices(metrics: list[str]) -> list[str]:
    """Metrics with one value per class are charted, not monitored."""
    single = [m for m in metrics if not METRICS[m].per_class]
    return ["validation.loss", "train.loss", *(f"validation.{m}" for m in single),
            *(f"train.{m}" for m in single if not METRICS[m].needs_scores)]


def monitored_metric(value, metrics: list[str], errors: dict) -> str:
    choices = monitor_choices(metrics)
    if value not in choices:
        errors["monitor"] = (f"The monitored metric must be one the run measures: {', '.join(choices)}. "
                             "Add a metric to the list to monitor it.")
        return "validation.loss"
    return value


def phase_plan(value, data: dict, settings: dict, optimizer: Optimizer | None, errors: dict) -> tuple[list, list[Phase]]:
    """The phases as given ([] for one phase of the whole run) and as the trainer follows them."""
    base_rate = optimizer.learning_rate if optimizer else 1e-3
    if value in (None, []):
        return [], [Phase(settings["epochs"], base_rate, "all", 1)]
    names = ", ".join(p.name for p in PHASE_PARAMS)
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value) or len(value) > MAX_PHASES:
        errors["phases"] = f"Phases are a list of up to {MAX_PHASES} objects like {{\"epochs\": 5, \"train\": \"head\"}}."
        return [], []
    given, plan, first = [], [], 1
    for number, phase in enumerate(value):
        unknown = sorted(set(phase) - {p.name for p in PHASE_PARAMS})
        if unknown:
            errors[f"phases.{number}.{unknown[0]}"] = f"A phase has no setting '{unknown[0]}'; it has {names}."
        epochs = checked(PHASE_PARAMS[0], phase.get("epochs", PHASE_PARAMS[0].default), f"phases.{number}.epochs", errors)
        rate = phase.get("learning_rate")
        rate = None if rate is None else checked(PHASE_PARAMS[1], rate, f"phases.{number}.learning_rate", errors)
        train = checked(PHASE_PARAMS[2], phase.get("train", "all"), f"phases.{number}.train", errors)
        frozen = checked(PHASE_PARAMS[3], phase.get("frozen_blocks", 0), f"phases.{number}.frozen_blocks", errors)
        ratio = checked(PHASE_PARAMS[4], phase.get("layer_rate_ratio", 1.0), f"phases.{number}.layer_rate_ratio", errors)
        check_frozen_blocks(frozen, settings["model"].get("architecture"), f"phases.{number}.frozen_blocks", errors)
        given.append({"epochs": epochs, "learning_rate": rate, "train": train, "frozen_blocks": frozen, "layer_rate_ratio": ratio})
        plan.append(Phase(epochs, rate or base_rate, train, first, frozen, ratio))
        first += epochs
    total = first - 1
    if "epochs" in data and data["epochs"] != total and "epochs" not in errors:
        errors["epochs"] = f"The phases add up to {total} epochs but epochs is {data['epochs']}; leave epochs out or make them agree."
    settings["epochs"] = total
    return given, plan


def check_frozen_blocks(frozen: int, architecture: str | None, path: str, errors: dict) -> None:
    entry = MODELS.get(architecture)
    if entry and frozen >= len(entry.blocks):
        errors[path] = (f"{entry.title} has {len(entry.blocks)} blocks, the last its head: freeze at most "
                        f"{len(entry.blocks) - 1} (a phase training the head only is train: head).")


def check_schedule_fits(schedule: Schedule, phases: list[Phase], errors: dict) -> None:
    try:
        schedule.check_fits(min(phase.epochs for phase in phases))
    except ParamError as error:
        errors[f"schedule.{error.param}"] = str(error)


def check_early_stopping(settings: dict, errors: dict) -> None:
    stopping = settings.get("early_stopping") or {}
    if stopping.get("enabled") and stopping.get("patience", 0) >= settings["epochs"]:
        errors["early_stopping.patience"] = (f"With a patience of {stopping['patience']} epochs a run of {settings['epochs']} epochs "
                                             "could never stop early; lower the patience or turn early stopping off.")


def spec_schema() -> dict:
    """Everything a form needs to build itself and the docs to describe the spec: each field's type,
    bounds, default and help; the registries' entries with theirs; each architecture's defaults."""
    return {
        "top_level": [p.schema() for p in TOP_LEVEL],
        "sections": {name: section.schema() for name, section in SECTIONS.items()},
        "optimizers": [kind.schema() for kind in OPTIMIZERS.values()],
        "losses": [kind.schema() for kind in LOSSES.values()],
        "schedules": [kind.schema() for kind in SCHEDULES.values()],
        "metrics": [kind.schema() for kind in METRICS.values()],
        "tasks": [kind.schema() for kind in TASKS.values()],
        "phase": [p.schema() for p in PHASE_PARAMS],
        "architectures": [{**a.describe(), "defaults": resolve_spec({"task": a.task, "model": {"architecture": a.name}}).to_dict()}
                          for a in MODELS.values()],
        "converted_architecture": converted_architecture(),
    }


def converted_architecture() -> dict:
    """What a form needs of the architecture 'imported' (a network converted from an imported ONNX file): not a zoo
    network, so its defaults are the toolkit's own; the sizes it takes are the imported model's."""
    defaults = resolve_spec({"model": {"architecture": IMPORTED_ARCHITECTURE, "weights": "imported", "imported_model": 1}}).to_dict()
    del defaults["model"]["imported_model"]  # the form names the one chosen
    return {"name": IMPORTED_ARCHITECTURE, "title": "An imported model (converted from ONNX)", "defaults": defaults,
            "description": "A network imported as an ONNX file and converted to PyTorch layers: it starts from its own "
                           "weights, its head fitted to this dataset's classes."}
