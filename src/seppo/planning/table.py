"""Each DVC stage's code and the params keys it reads: the one table `seppo plan` writes dvc.yaml from.

A stage lists exactly the keys its code reads, so that `dvc exp run -S train.criterion=sign`
re-runs the training rounds and what follows, but not the reference samples, which never read
it. tests/test_stages.py reads the code (ast) and fails when a stage reads a key not declared
here, or declares one it does not read.

Adding a params field: a field read only by its section's stage (``world``, ``base_model``, ...,
``train``) needs no edit here (``every(...)`` takes it); a field another stage reads too is one
edit, in that stage's list below.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Params, video_train_config


@dataclass(frozen=True)
class Every:
    """Every key of ``section`` except ``but`` (keys read by other stages only, or by no stage)."""

    section: str
    but: tuple[str, ...] = ()


def every(section: str, *but: str) -> Every:
    return Every(section, tuple(but))


@dataclass(frozen=True)
class Stage:
    """A stage named ``x`` runs `seppo x` (underscores as hyphens: eval_generate -> `seppo eval-generate`), whose
    entry point is seppo/stages/x.py; its code deps are the modules that command imports, transitively
    (code_deps.command_modules); its paths come from seppo.layout (planning/dvc.py)."""

    reads: tuple[str | Every, ...]   # "section.key" or every(section, but...)


# Keys declared ahead of their config field (skipped while the field does not exist); empty now.
PENDING: set[str] = set()
# what the refsamples stage also reads when it precomputes the reference's errors: training's draws
# (noise offset, the anchor's own draws) and arithmetic (autocast)
PRECOMPUTE_READS = ("train.noise_offset", "train.anchor_draws", "train.mixed_precision")

# train keys no stage code reads: `rounds` shapes the graph (and is read by `train` only under a
# non-constant lr schedule, see `conditional_reads`), `accelerate_config` is in the command itself
TRAIN_PLAN_ONLY = ("rounds", "accelerate_config")
# train keys only the refsamples / select stages read: `train` sees them through those stages' outputs
TRAIN_UPSTREAM_ONLY = ("strategy", "ref_samples", "ref_samples_per_prompt", "ref_batch_size", "ref_sampling",
                       "oracle", "reward_scorer")
# what the refsamples stage also reads under criterion=reward: it scores each reference sample and its winner
REWARD_READS = ("train.criterion", "train.reward_scorer", "train.reward_margin", "evaluate.models")

# what every video round stage reads beside train.*: the overrides (config.video_train_config)
VIDEO_TRAIN = ("video.train_overrides",)

STAGES: dict[str, Stage] = {
    "world": Stage((every("world"),)),
    "base_model": Stage((every("base_model"),)),
    "base_samples": Stage((every("base_samples"),)),
    "ingest": Stage((every("ingest", "max_quarantine_share", "max_unreadable_shards", "min_winners"),)),
    "validate": Stage((
        "ingest.allowed_formats", "ingest.allowed_modes", "ingest.max_caption_chars", "ingest.max_side",
        "ingest.min_side", "ingest.max_quarantine_share", "ingest.max_unreadable_shards", "ingest.min_winners")),
    "cache": Stage((every("cache"),)),
    "scorer_model": Stage((every("scorer_model", "enabled"), "world.image_size")),
    "select": Stage(("train.loss", "train.strategy", "train.seed")),
    "refsamples": Stage((
        "train.loss", "train.seed", "train.updates_per_round", "train.micro_batch", "train.grad_accum",
        "train.processes", "train.ref_samples", "train.ref_samples_per_prompt", "train.ref_batch_size",
        "train.ref_sampling", "train.reference_errors", "train.oracle")),
    "train": Stage((every("train", *TRAIN_PLAN_ONLY, *TRAIN_UPSTREAM_ONLY),)),
    "eval_generate": Stage((
        "evaluate.prompts", "evaluate.prompt_column", "evaluate.split", "evaluate.max_prompts",
        "evaluate.seeds", "evaluate.sampling", "evaluate.batch_size")),
    "evaluate": Stage((
        "evaluate.prompts", "evaluate.split", "evaluate.seeds", "evaluate.sampling", "evaluate.batch_size",
        "evaluate.scorers", "evaluate.models", "evaluate.n_boot", "evaluate.seed", "evaluate.grid_prompts")),
    "report": Stage((
        "train.loss", "train.rounds", "train.strategy", "train.criterion", "train.beta", "train.lr",
        "train.updates_per_round", "train.micro_batch", "train.grad_accum", "train.seed", "train.ref_samples",
        "train.ref_sampling", "evaluate.scorers", "evaluate.models", "evaluate.n_boot", "evaluate.seed", "base_model.source",
        "base_model.revision", "study.out", "study.variants", "study.compare_to", "study.seeds")),
    # the text-to-video pipeline (video/dvc.yaml): its rounds train with train.* + video.train_overrides
    "video_world": Stage((every("video_world"),)),
    "video_base": Stage((every("video_base"),)),
    "video_features": Stage((every("video_features"), "video_world.image_size", "video_world.frames")),
    "video_ingest": Stage(("video.source", "video.losers", "video.frames", "video.max_side", "video.sample_frames")),
    "video_cache": Stage(("video.frames",)),
    "video_select": Stage(("train.loss", "train.strategy", "train.seed", *VIDEO_TRAIN)),
    "video_refsamples": Stage((
        "train.loss", "train.seed", "train.updates_per_round", "train.micro_batch", "train.grad_accum",
        "train.processes", "train.ref_samples", "train.ref_samples_per_prompt", "train.ref_batch_size",
        "train.ref_sampling", "train.reference_errors", "train.oracle", *VIDEO_TRAIN)),
    "video_train": Stage((every("train", *TRAIN_PLAN_ONLY, *TRAIN_UPSTREAM_ONLY), "video.trainable", *VIDEO_TRAIN)),
    "video_eval_generate": Stage(("video.prompts", "video.eval_prompts", "video.eval_seeds", "video.sampling",
                                  "video.batch_size", "video.frames")),
    "video_evaluate": Stage(("video.real", "video.frames", "video.sample_frames", "video.lpips_weights",
                             "video.fid_weights", "video.fvd_weights", "video.n_boot", "video.seed")),
    # the report prints the knobs that made the checkpoints; sampling, seeds and frames come from the stages' settings
    "video_report": Stage(("video.arms", "video.trainable", "video.train_overrides", "video.preview_prompts",
                           "train.rounds", "train.seed", "train.criterion", "train.strategy", "train.lr", "train.beta",
                           "train.updates_per_round", "train.micro_batch", "train.grad_accum", "base_model.source",
                           "base_model.revision", "video_study.out", "video_study.variants", "video_study.compare_to",
                           "video_study.seeds", "video_study.n_boot")),
}


def conditional_reads(stage: str, params: Params) -> list[str]:
    """Keys a stage reads only under some settings (the plan is written from the params)."""
    if stage == "train" and params.train.lr_schedule != "constant":
        return ["train.rounds"]  # the schedule spans all rounds: more rounds change every round's lr
    if stage == "video_train" and video_train_config(params).lr_schedule != "constant":
        return ["train.rounds"]
    keys: list[str] = []
    if stage in ("refsamples", "video_refsamples") and params.train.reference_errors == "precomputed":
        keys += PRECOMPUTE_READS
    if stage in ("refsamples", "video_refsamples") and params.train.criterion in ("oracle", "oracle_drop"):
        keys.append("train.criterion")  # refuses data without a ground truth
    if stage in ("refsamples", "video_refsamples") and params.train.criterion == "reward":
        # the video stage refuses reward (no clip scorer) before it would read a scorer's weights
        keys += REWARD_READS if stage == "refsamples" else [k for k in REWARD_READS if k.startswith("train.")]
    return keys


def _exists(key: str) -> bool:
    section, _, name = key.partition(".")
    fields = Params.model_fields
    return section in fields and (not name or name in fields[section].annotation.model_fields)


def params_of(stage: str, params: Params | None = None) -> list[str]:
    """The params keys of ``stage`` for dvc.yaml: a whole section's name when the stage reads all of it."""
    keys: list[str] = []
    for item in STAGES[stage].reads:
        if isinstance(item, Every):
            if not item.but:
                keys.append(item.section)
                continue
            model = Params.model_fields[item.section].annotation
            unknown = set(item.but) - set(model.model_fields)
            if unknown:
                raise KeyError(f"planning/table.py: {stage}: every({item.section!r}) excludes unknown keys {sorted(unknown)}")
            keys += [f"{item.section}.{k}" for k in model.model_fields if k not in item.but]
        elif _exists(item):
            keys.append(item)
        elif item not in PENDING:
            raise KeyError(f"planning/table.py: {stage} reads {item!r}, which is not a params key")
    if params is not None:
        keys += conditional_reads(stage, params)
    return keys


def keys_of(stage: str, params: Params | None = None) -> set[str]:
    """``params_of`` with whole sections expanded to their keys (for checks)."""
    out = set()
    for k in params_of(stage, params):
        if "." in k:
            out.add(k)
        else:
            out |= {f"{k}.{f}" for f in Params.model_fields[k].annotation.model_fields}
    return out
