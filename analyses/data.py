"""Which benchmarks a model has data for, loaded as Tasks: the zoo's own for zoo models, Study A's real data
sets from local files (config `data`) for any model with a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field

from mechhybrid.errors import MechHybridError

from .common import warn
from .schema import DataInfo
from .scoring import References
from .tasks import LMTask, Task, fit_to

__all__ = ["speaks_zoo", "TaskSet", "load_tasks", "task_set", "model_max_len"]

N_REF_DOCS = 8
"""Held-out documents (after the scored ones) that mean and resample ablations draw on."""


@dataclass
class TaskSet:
    """The benchmarks of one run, with the held-out reference text for mean/resample ablation."""

    tasks: dict[str, Task]
    refs: References | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        lms = [n for n, t in self.tasks.items() if isinstance(t, LMTask)]
        if len(lms) > 1:
            raise MechHybridError(f"at most one language-modelling benchmark per run, got {lms}")
        for name, task in self.tasks.items():
            if task.n == 0:
                raise MechHybridError(f"benchmark {name!r} has no items")

    @property
    def lm(self) -> str | None:
        """Name of the language-modelling (perplexity) benchmark, if any."""
        return next((n for n, t in self.tasks.items() if isinstance(t, LMTask)), None)

    @property
    def data(self) -> list[DataInfo]:
        return [DataInfo(t.name, t.version, t.n) for t in self.tasks.values()]


def task_set(tasks: dict[str, Task] | list[Task], reference_docs=None) -> TaskSet:
    """A TaskSet from Tasks built in code (tests, notebooks); reference text defaults to none."""
    if isinstance(tasks, (list, tuple)):
        tasks = {t.name: t for t in tasks}
    refs = References.from_docs(reference_docs) if reference_docs else None
    return TaskSet(dict(tasks), refs)


def speaks_zoo(hm) -> bool:
    """A zoo model, or any checkpoint with the zoo's tokenizer (e.g. one from `mechhybrid zoo train`): the
    zoo benchmarks are token ids of that vocabulary."""
    if str(getattr(hm, "name", "")).startswith("zoo:"):
        return True
    tok = getattr(hm, "tokenizer", None)
    if tok is None:
        return False
    from mechhybrid.zoo.tokenizer import TOKEN_ID

    return tok.get_vocab() == TOKEN_ID


def _zoo_sources(hm, limit: int, seed: int) -> dict:
    """name -> loader() -> (Task, reference docs) for a zoo model; {} for any other model."""
    if not speaks_zoo(hm):
        return {}
    from .zoo_tasks import zoo_loaders

    return zoo_loaders(hm, limit, seed)


def _file_sources(hm, data: dict, limit: int, seed: int, lm_tokens: int) -> dict:
    if not data:
        return {}
    from .datasets import READERS, read_benchmark

    unknown = sorted(set(data) - set(READERS))
    if unknown:
        raise MechHybridError(f"no reader for data {unknown}; readers: {', '.join(sorted(READERS))}")
    if getattr(hm, "tokenizer", None) is None:
        raise MechHybridError(f"model {hm.name} has no tokenizer, so its text benchmarks cannot be encoded")
    max_len = model_max_len(hm, lm_tokens)
    return {name: (lambda n=name, p=path: read_benchmark(n, p, hm.tokenizer, limit, seed, max_len))
            for name, path in data.items()}


def load_tasks(hm, cfg, analysis: str) -> TaskSet:
    """The benchmarks `cfg` selects for `hm` (all available by default); a clear error for one it lacks."""
    sources = _zoo_sources(hm, cfg.limit, cfg.seed)
    sources.update(_file_sources(hm, cfg.data, cfg.limit, cfg.seed, min(cfg.lm_tokens, cfg.max_tokens or cfg.lm_tokens)))
    if cfg.benchmarks:
        missing = [b for b in cfg.benchmarks if b not in sources]
        if missing:
            have = ", ".join(sorted(sources)) or "none"
            raise MechHybridError(f"{analysis}: model {hm.name} has no data for benchmark(s) {missing} "
                                  f"(available: {have}; real data sets come from config `data`)")
        names = list(cfg.benchmarks)
    else:
        names = [n for n in sources if n not in cfg.exclude_benchmarks]
    if not names:
        raise MechHybridError(f"{analysis}: model {hm.name} has no benchmark data; give local data sets "
                              "in the config's `data` table (e.g. data.wikitext = PATH)")
    tasks, ref_docs, notes = {}, None, []
    max_len = model_max_len(hm, cfg.max_tokens)
    for name in names:
        task, refs = sources[name]()
        if max_len is not None:
            task, cut = fit_to(task, max_len)
            if cut:
                notes.append(f"{name}: {cut} prompt(s) left-truncated to {max_len} tokens")
        tasks[name] = task
        if refs:
            ref_docs = refs
    notes += beyond_training(hm, tasks)
    return TaskSet(tasks, References.from_docs(ref_docs) if ref_docs else None, notes)


def _longest(task) -> int:
    """The most tokens one forward of `task` reads (a generation prompt plus its longest answer)."""
    if hasattr(task, "sequences"):
        return max(len(seq.ids) for seq in task.sequences())
    return max(len(item.prompt) for item in task.items) + task.max_new_tokens


_SAID: set[str] = set()


def beyond_training(hm, tasks: dict) -> list[str]:
    """One note per benchmark whose inputs are longer than the zoo model was trained on: such inputs run
    (retrieval beyond the training length is measured on purpose), and the Result says so; stderr hears it
    once per process (a study loads each model's benchmarks once per analysis)."""
    name = str(getattr(hm, "name", ""))
    if not name.startswith("zoo:"):
        return []
    from mechhybrid.zoo.registry import load_card

    trained = load_card(name[len("zoo:"):]).get("recipe", {}).get("seq_len")
    notes = []
    for task_name, task in tasks.items():
        longest = _longest(task)
        if trained and longest > trained:
            notes.append(f"{task_name}: inputs of up to {longest} tokens, beyond the {trained} tokens {name} was "
                         "trained on (scores there measure length generalisation)")
            if notes[-1] not in _SAID:
                _SAID.add(notes[-1])
                warn(notes[-1])
    return notes


def model_max_len(hm, max_tokens: int) -> int | None:
    """The longest sequence to feed: the config's cap, else the model's own position limit (None: none)."""
    config = hm.hf_model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if max_tokens:
        return max_tokens if limit is None else min(max_tokens, limit)
    return limit
