"""Run configuration: dataclasses with defaults, YAML recipes, ``--set key=value`` overrides.

A run is described by one :class:`RunConfig` with six sections::

    data     training windows, batches and sampling (window, batch_size, sampling.balanced)
    model    architecture name + constructor overrides, checked against the model's own config class
    optim    optimizer, learning-rate schedule, gradient clipping
    train    when to stop, precision, device, seed, logging and checkpoint cadence
    eval     dev evaluation cadence, scoring windows, early-stopping patience
    augment  the augmentation section, ``AugmentConfig`` (see :mod:`rawguard.augment`)

Precedence: dataclass defaults < YAML file < ``--set`` overrides (applied left to right). Every value
is type-checked against its field, and every error is a :class:`ConfigError` naming the offending key
(``optim.lr``), with close matches suggested for unknown keys. The resolved configuration is written
to ``RUN/config.yaml`` and into every checkpoint, so ``load_config(RUN/config.yaml)`` reproduces a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from rawguard.augment import AugmentConfig
from rawguard.conventions import DEFAULT_WINDOW
from rawguard.data.sampling import Sampling, SamplingError


class ConfigError(ValueError):
    """A configuration file, key or value is invalid; the message names the key (and file)."""


@dataclass
class DataConfig:
    """Training windows drawn from the train cache (``rawguard.data.dataset.TrainBatches``)."""

    window: int = DEFAULT_WINDOW
    """Training crop length in samples (random crop of longer clips, padding of shorter ones)."""
    batch_size: int = 32
    """Global batch size: split evenly across DDP ranks and gradient-accumulation micro-batches."""
    sampling: Sampling = field(default_factory=Sampling)
    """Which clips an epoch draws: ``balanced``, ``copy_share``, ``system_balance``
    (:class:`rawguard.data.sampling.Sampling`, handed whole to the batch source)."""
    prefetch: int = 2
    """Batches assembled ahead in a background thread (0 = in the training thread)."""


@dataclass
class ModelConfig:
    """Architecture name (``rawguard.models.list_models()``) and keyword overrides of its config."""

    name: str = "rawnet-lite"
    overrides: dict[str, Any] = field(default_factory=dict)
    """Written flat in YAML (``model: {name: rawnet2, gru_layers: 1}``) and ``--set model.gru_layers=1``."""


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule: linear warm-up, then cosine decay (or constant)."""

    name: str = "adamw"
    """``adam`` (L2 penalty in the gradient, as the RawNet2 baseline) or ``adamw`` (decoupled decay)."""
    lr: float = 1e-3
    """Peak learning rate, reached at the end of warm-up."""
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "cosine"
    """``cosine`` (decay to ``min_lr_ratio * lr`` over ``decay_steps``) or ``constant``."""
    warmup_steps: int = 0
    """Linear warm-up from ~0 to ``lr`` over this many optimizer steps."""
    decay_steps: int = 0
    """Length of the whole schedule in steps; 0 = derived from ``train.max_steps`` / ``train.max_epochs``."""
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""


@dataclass
class TrainConfig:
    """When to stop, how to compute, how often to log and checkpoint."""

    max_steps: int = 0
    """Stop after this many optimizer steps (0 = no step limit)."""
    max_epochs: int = 0
    """Stop after this many passes over the train cache (0 = no epoch limit)."""
    max_minutes: float = 0.0
    """Wall-clock budget in minutes, summed over a run's resumed stretches (0 = none). Not reproducible."""
    fit_schedule: bool = False
    """Fit the schedule into ``max_minutes``: at the first dev evaluation and at each before
    ``eval.select_from``'s boundary, from the speed measured so far, set ``max_steps`` (and the
    cosine, and the boundary with it) to the most steps, up to the configured ones, that end within
    95 % of ``max_minutes``; a fast enough machine keeps every step. Without it ``max_minutes`` cuts
    the schedule wherever the time runs out. Needs ``max_steps`` and ``eval.every``; with
    ``max_minutes`` 0 there is nothing to fit and it does nothing. See :mod:`rawguard.training.budget`."""
    precision: str = "auto"
    """``fp32``, ``bf16`` (autocast, CPU or CUDA), ``fp16`` (autocast + grad scaler, CUDA only) or ``auto``."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun the local rank's GPU."""
    threads: int = 0
    """CPU threads for torch (0 = torch's default). Fix it for bit-exact resume on CPU."""
    seed: int = 0
    """Seeds the batch order, crops, initialisation, dropout and augmentation."""
    label_smoothing: float = 0.0
    """Cross-entropy towards ``1 - eps/2`` for the true class instead of 1, so the
    loss stops rewarding ever larger logit margins on clips that are already right (0 = off)."""
    class_weights: list[float] | None = None
    """Loss weights indexed by label id: ``[spoof, bonafide]`` (RawNet2 baseline: [0.1, 0.9])."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (the global batch is split; same result as more GPUs)."""
    sync_batchnorm: bool = True
    """Under multi-GPU DDP, convert BatchNorm to SyncBatchNorm (CUDA only; CPU/gloo keeps per-rank stats)."""
    dist_backend: str = "auto"
    """DDP backend under torchrun: ``auto`` (NCCL on CUDA, gloo on CPU), ``nccl`` or ``gloo``. gloo on
    CUDA lets several ranks share one GPU (NCCL refuses that): for checking a multi-GPU set-up on one."""
    compile: bool = False
    """Run the training forward/backward through ``torch.compile`` (Inductor): 1.08-1.25x faster
    rawnet-lite training end to end on a CPU, none on a GPU (BENCHMARKS.md), at ~25 s of
    compilation on the first step (cached on disk after).
    Needs a C++ compiler on CPU, Triton on CUDA; warns and trains eagerly when compilation fails.
    Scoring stays eager."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (slower on CUDA; CPU training is deterministic already)."""
    log_every: int = 10
    """Write a ``metrics.jsonl`` line (mean loss since the previous one) every N steps."""
    checkpoint_every: int = 25
    """Write ``last.pt`` every N steps (also at every dev evaluation, on SIGTERM/SIGINT and at the end)."""
    checkpoint_minutes: float = 5.0
    """Also write ``last.pt`` when this many minutes have passed since the last one (0 = off); the
    training result does not depend on when checkpoints are taken."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights and BatchNorm statistics with this decay
    (e.g. 0.999; 0 = off); dev evaluation, ``best.pt`` and the final model then use the average."""


@dataclass
class EvalConfig:
    """Dev-set evaluation: selects ``best.pt`` by dev EER and drives early stopping."""

    every: int = 500
    """Evaluate on the dev cache every N steps (and always at the end); 0 = only at the end."""
    window: int = DEFAULT_WINDOW
    """Scoring window in samples; an utterance's score is the mean over its windows."""
    hop: int = DEFAULT_WINDOW
    """Hop between scoring windows in samples."""
    batch_size: int = 64
    precision: str = "fp32"
    """Precision of dev scoring. fp32 by default, as ``rawguard evaluate`` and the Detector score, so
    the threshold and calibration stored in ``best.pt`` match the scores users will see."""
    patience: int = 0
    """Stop after this many dev evaluations without a lower EER (0 = never stop early)."""
    select_from: float = 0.0
    """Fraction of ``train.max_steps`` before which dev evaluations are logged but never select
    ``best.pt`` (nor count for patience): the high-learning-rate start of the cosine is not shipped
    for a lucky dev EER. A run that stops before it selects its last evaluated weights."""
    early_every: int = 0
    """Evaluate every N steps before ``select_from`` instead of every ``every`` (0 = ``every``):
    those evaluations only draw the dev curve, so a sparser curve there saves their time. It changes
    neither the training (evaluation draws no training randomness) nor which weights are selected."""





@dataclass
class RunConfig:
    """The complete, resolved configuration of a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (YAML- and checkpoint-safe); the model section is written flat."""
        out: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if section.name == "model":
                out["model"] = {"name": value.name, **value.overrides}
            else:
                out[section.name] = dataclasses.asdict(value)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Build and validate a config from a nested dict (as written by :meth:`to_dict`)."""
        config = cls()
        _merge(config, data, source)
        validate(config)
        return config


# ----------------------------------------------------------------------------------------------
# Loading and overriding


PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
"""The recipes shipped inside the package (``configs/`` in a source checkout links here)."""


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A config file path, or the name of a packaged recipe (``shared_corpus``, ``augment/none.yaml``).

    Raises:
        ConfigError: naming the path and listing the packaged recipes, when neither exists.
    """
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (PACKAGED_CONFIGS / path, PACKAGED_CONFIGS / path.with_name(path.name + ".yaml")):
        if not path.is_absolute() and candidate.is_file():
            return candidate
    known = ", ".join(sorted(str(p.relative_to(PACKAGED_CONFIGS).with_suffix("")) for p in PACKAGED_CONFIGS.rglob("*.yaml")))
    raise ConfigError(f"{path}: config file not found (packaged recipes: {known})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key written twice in one mapping (PyYAML keeps the last one
    silently, so an edited config could train with a value its reader never saw)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(
    yaml_path: str | os.PathLike | list | tuple | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Defaults, then the YAML file(s) in order, then ``key=value`` overrides; validated.

    Args:
        yaml_path: a recipe (``configs/shared_corpus.yaml``, or a packaged recipe's name such as
            ``shared_corpus``), a run's ``config.yaml``, or a list of them (later files override
            earlier ones, e.g. ``["shared_corpus", "augment/none"]``); None = defaults.
        overrides: ``["optim.lr=3e-4", "train.max_steps=200"]``; values are parsed as YAML scalars
            (or flow lists: ``train.class_weights=[0.1,0.9]``) and type-checked against the field.

    Raises:
        ConfigError: naming the file and key, for unreadable YAML, unknown keys, wrong types or
            out-of-range values.
    """
    config = RunConfig()
    if yaml_path is None:
        paths = []
    elif isinstance(yaml_path, (list, tuple)):
        paths = list(yaml_path)
    else:
        paths = [yaml_path]
    for name in paths:
        path = resolve_config_path(name)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file: {error.strerror or error}") from error
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {error}") from error
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
        _merge(config, data, str(path))
    for item in overrides:
        key, value = parse_override(item)
        set_value(config, key, value, source="--set")
    validate(config)
    return config


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)``: the value parsed as a YAML scalar or list."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {error}") from error
    return key, value


MOVED_KEYS = {
    "data.balanced": "data.sampling.balanced",
    "data.copy_share": "data.sampling.copy_share",
    "data.system_balance": "data.sampling.system_balance",
}
"""Keys that moved into a section: old recipes and the configs saved in old checkpoints still load."""

REMOVED_KEYS: dict[str, Any] = {
    "data.speaker_matched": False,
    "data.speaker_balance": 0.0,
    "data.spoof_speaker_balance": 0.0,
    "data.sampling.bonafide_balance": 0.0,
    "optim.sam_rho": 0.0,
    "optim.sam_adaptive": False,
    "optim.sam_from": 0.0,
    "train.loss": "cross_entropy",
    "train.oc_margins": [0.9, 0.2],
    "train.mixup": 0.0,
    "train.speaker_adversarial": 0.0,
    "train.system_auxiliary": 0.0,
    "augment.tones.p": 0.0,
    "augment.dynamics.p": 0.0,
}
"""Options removed because they did not help (BENCHMARKS.md, "What did not help"), with the value
that meant "off". An old config or checkpoint that names one at that value loads (the key is
ignored: the run did not use it); any other value is a :class:`ConfigError`, since the run it
describes cannot be reproduced without the option. A removed augmentation is listed by its ``p``:
its whole section, as a saved config writes it, loads when ``p`` is 0, and its other parameters
mean nothing then."""


def _removed_key(key: str, value: Any, source: str) -> bool:
    """True when ``key`` is a removed option at its "off" value (ignore it); raise when it was on."""
    if f"{key}.p" in REMOVED_KEYS and isinstance(value, dict):  # a removed augmentation's section
        key, value = f"{key}.p", value.get("p")
    elif f"{key.rpartition('.')[0]}.p" in REMOVED_KEYS and not key.endswith(".p"):  # one of its parameters
        return True
    if key not in REMOVED_KEYS:
        return False
    off = REMOVED_KEYS[key]
    if value is None or value == off:
        return True
    raise ConfigError(
        f"{source}: {key}: this option was removed (it did not help; see BENCHMARKS.md, \"What did not "
        f"help\"), so a run with {key}={value!r} cannot be reproduced; only {off!r} (off) is accepted"
    )


def set_value(config: RunConfig, key: str, value: Any, source: str = "--set") -> None:
    """Set one dotted key with type checking.

    ``section.field`` for flat sections, deeper paths for nested sections
    (``augment.rawboost_lnl.p``), and ``model.X`` for a model override (checked in :func:`validate`
    against the model's own config class, which depends on ``model.name``). Keys of
    :data:`MOVED_KEYS` are set at their new place; keys of :data:`REMOVED_KEYS` are ignored at
    their "off" value and rejected otherwise.
    """
    key = MOVED_KEYS.get(key, key)
    if _removed_key(key, value, source):
        return
    parts = key.split(".")
    section_name = parts[0]
    sections = {f.name for f in dataclasses.fields(config)}
    if section_name not in sections:
        raise ConfigError(f"{source}: unknown config section {section_name!r} in {key!r}{_suggest(key, all_keys(config))}")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{source}: {key!r} names a section; set one of its keys, e.g. {section_name}.<key>=VALUE")
    if section_name == "model":
        if len(parts) != 2:
            raise ConfigError(f"{source}: {key!r}: model keys are flat (model.<field>)")
        if parts[1] == "name":
            config.model.name = _check_type(value, str, f"{source}: model.name")
        else:
            config.model.overrides[parts[1]] = value
        return
    target: Any = config
    for depth, name in enumerate(parts):
        fields = {f.name for f in dataclasses.fields(target)}
        if name not in fields:
            raise ConfigError(f"{source}: unknown config key {key!r}{_suggest(key, all_keys(config))}")
        annotation = typing.get_type_hints(type(target))[name]
        current = getattr(target, name)
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(current):
                # A whole nested section given as a mapping (YAML): set its keys one by one.
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: {key}: expected a mapping of keys, got {value!r}")
                for sub_key, sub_value in value.items():
                    set_value(config, f"{key}.{sub_key}", sub_value, source)
                return
            setattr(target, name, _check_type(value, annotation, f"{source}: {key}"))
            return
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{source}: {key!r}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        target = current


def all_keys(config: RunConfig) -> list[str]:
    """Every settable dotted key (model overrides excepted, as they depend on the model)."""

    def walk(obj: Any, prefix: str) -> list[str]:
        keys = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                keys.extend(walk(value, f"{prefix}{f.name}."))
            else:
                keys.append(f"{prefix}{f.name}")
        return keys

    keys = []
    for section in dataclasses.fields(config):
        if section.name == "model":
            keys.append("model.name")
        else:
            keys.extend(walk(getattr(config, section.name), f"{section.name}."))
    return keys


def _merge(config: RunConfig, data: dict[str, Any], source: str) -> None:
    for section_name, section_data in data.items():
        if section_data is None:
            continue
        if not isinstance(section_data, dict):
            raise ConfigError(
                f"{source}: section {section_name!r} must be a mapping of keys, got {type(section_data).__name__}"
                f"{_suggest(str(section_name), [f.name for f in dataclasses.fields(config)])}"
            )
        for field_name, value in section_data.items():
            set_value(config, f"{section_name}.{field_name}", value, source=source)


def _suggest(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    if not close:
        tail = key.rpartition(".")[2]
        close = [c for c in candidates if c.rpartition(".")[2] == tail][:3]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` converted to ``annotation`` where that is lossless, else raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if annotation is Any:
        return value
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value in choices:
            return value
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, choices))}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is tuple:
        # Kept as a list so the config stays YAML-safe; the model constructor gets a tuple back.
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
        return [_check_type(item, args[i] if args else Any, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _as_number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        number = _as_number(value)
        if number is not None:
            return float(number)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _as_number(value: Any) -> float | int | None:
    # PyYAML (YAML 1.1) reads "1e-4" as a string: accept numeric strings for numeric fields.
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------------------------------
# Validation

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "constant")


def validate(config: RunConfig) -> RunConfig:
    """Check ranges and choices, and the model overrides against the model's config class.

    Raises:
        ConfigError: naming the first offending key.
    """
    checks: list[tuple[str, bool, str]] = [
        ("data.window", config.data.window > 0, "must be > 0"),
        ("data.batch_size", config.data.batch_size > 0, "must be > 0"),
        ("data.prefetch", config.data.prefetch >= 0, "must be >= 0"),
        ("optim.name", config.optim.name in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
        ("optim.lr", config.optim.lr > 0, "must be > 0"),
        ("optim.weight_decay", config.optim.weight_decay >= 0, "must be >= 0"),
        ("optim.betas", len(config.optim.betas) == 2 and all(0 <= b < 1 for b in config.optim.betas),
         "must be two numbers in [0, 1)"),
        ("optim.eps", config.optim.eps > 0, "must be > 0"),
        ("optim.schedule", config.optim.schedule in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
        ("optim.warmup_steps", config.optim.warmup_steps >= 0, "must be >= 0"),
        ("optim.decay_steps", config.optim.decay_steps >= 0, "must be >= 0"),
        ("optim.min_lr_ratio", 0 <= config.optim.min_lr_ratio <= 1, "must be in [0, 1]"),
        ("optim.grad_clip", config.optim.grad_clip >= 0, "must be >= 0 (0 disables clipping)"),
        ("train.max_steps", config.train.max_steps >= 0, "must be >= 0"),
        ("train.max_epochs", config.train.max_epochs >= 0, "must be >= 0"),
        ("train.max_minutes", config.train.max_minutes >= 0, "must be >= 0"),
        # Without train.max_minutes there is no budget to fit into and the option does nothing, so that
        # `--set train.max_minutes=0` lifts the time limit of a config that fits its schedule.
        ("train.fit_schedule", not config.train.fit_schedule or config.train.max_steps > 0,
         "needs train.max_steps (the schedule it fits into train.max_minutes)"),
        ("train.fit_schedule", not config.train.fit_schedule or config.eval.every > 0,
         "needs eval.every > 0 (the plan is made at the first dev evaluation, which it times)"),
        ("train.fit_schedule", not config.train.fit_schedule or config.optim.decay_steps == 0,
         "cannot shorten a schedule whose length optim.decay_steps fixes; set optim.decay_steps=0"),
        ("train.precision", config.train.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
        ("train.device", config.train.device == "auto" or config.train.device.split(":")[0] in ("cpu", "cuda"),
         "must be auto, cpu, cuda or cuda:N"),
        ("train.threads", config.train.threads >= 0, "must be >= 0 (0 = torch default)"),
        ("train.dist_backend", config.train.dist_backend in ("auto", "nccl", "gloo"), "must be auto, nccl or gloo"),
        ("train.class_weights", config.train.class_weights is None
         or (len(config.train.class_weights) == 2 and all(w > 0 for w in config.train.class_weights)),
         "must be null or two positive numbers [spoof, bonafide]"),
        ("train.label_smoothing", 0 <= config.train.label_smoothing < 1, "must be in [0, 1) (0 = off)"),
        ("train.grad_accum", config.train.grad_accum >= 1, "must be >= 1"),
        ("train.grad_accum", config.data.batch_size % config.train.grad_accum == 0,
         f"must divide data.batch_size ({config.data.batch_size})"),
        ("train.log_every", config.train.log_every >= 1, "must be >= 1"),
        ("train.checkpoint_every", config.train.checkpoint_every >= 0, "must be >= 0"),
        ("train.checkpoint_minutes", config.train.checkpoint_minutes >= 0, "must be >= 0"),
        ("train.ema_decay", 0 <= config.train.ema_decay < 1, "must be in [0, 1) (0 = off)"),
        ("eval.every", config.eval.every >= 0, "must be >= 0 (0 = only at the end)"),
        ("eval.early_every", config.eval.early_every >= 0, "must be >= 0 (0 = eval.every)"),
        ("eval.window", config.eval.window > 0, "must be > 0"),
        ("eval.hop", config.eval.hop > 0, "must be > 0"),
        ("eval.batch_size", config.eval.batch_size > 0, "must be > 0"),
        ("eval.precision", config.eval.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
        ("eval.patience", config.eval.patience >= 0, "must be >= 0 (0 disables early stopping)"),
        ("eval.select_from", 0 <= config.eval.select_from < 1, "must be in [0, 1) (a fraction of train.max_steps)"),
    ]
    for key, ok, message in checks:
        if not ok:
            raise ConfigError(f"{key}: {message}, got {_get(config, key)!r}")
    try:
        config.data.sampling.validate("data.sampling")
    except SamplingError as error:  # the message names data.sampling.<field>
        raise ConfigError(str(error)) from error
    _validate_model(config.model)
    check = getattr(config.augment, "validate", None)
    if check is not None:
        try:
            check("augment")
        except ValueError as error:  # AugmentConfigError: the message already names augment.<x>.<y>
            raise ConfigError(str(error)) from error
    return config


def _get(config: RunConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(config, section), name)


def _validate_model(model: ModelConfig) -> None:
    from rawguard.models import build_config, get_config_class, list_models, without_removed_fields

    try:
        config_cls = get_config_class(model.name)
    except (KeyError, ValueError) as error:  # ModelConfigError is a ValueError
        known = list_models()
        raise ConfigError(
            f"model.name: unknown model {model.name!r}{_suggest(model.name, known)} (known: {', '.join(known)})"
        ) from error
    try:
        model.overrides = without_removed_fields(model.name, model.overrides)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from error
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key, value in list(model.overrides.items()):
        if key not in fields:
            raise ConfigError(
                f"model.{key}: not a field of {model.name!r} ({config_cls.__name__})"
                f"{_suggest(key, sorted(fields))}"
            )
        model.overrides[key] = _check_type(value, hints.get(key, Any), f"model.{key}")
    try:  # the model's own range checks (__post_init__)
        build_config(model.name, **model.overrides)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from error
