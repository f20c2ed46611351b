"""Where every file of the pipeline lives: each path written once, here.

The planner (dvc.yaml), the CLI's defaults, the stages and the reports all take their paths from
this module, so moving an output is one edit. Paths are relative to the project root (DVC stages
run there).

  world              data/world/ (+ web/, prompts.parquet, pairs_truth.parquet, pickapic/)
  theta_0            models/base/                       (the base_model stage)
  theta_k            models/round_k/                    (a StableDiffusionPipeline folder)
  video (an arm)     models/video_base/, models/video_[<arm>_]round_k/ (AnimateDiffPipeline folders), and
                     the round files below with the prefix video_ / video_<arm>_ (Layout.prefix)
  selection          runs/round_k/reference.json
  reference samples  data/refsamples/round_k/
  training logs      runs/round_k/live/                 (DVCLive)
  anchor records     runs/round_k/positions.parquet
  wall-clock figures reports/metrics/timing/*.json      (nothing depends on them)
  resumable state    runs/state/round_k/                (not DVC-tracked; removed when the round ends)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# the embedded world (the `world` stage)
WORLD = "data/world"
WORLD_WEB = f"{WORLD}/web"
WORLD_PROMPTS = f"{WORLD}/prompts.parquet"
WORLD_PAIRS_TRUTH = f"{WORLD}/pairs_truth.parquet"
WORLD_PICKAPIC = f"{WORLD}/pickapic"          # the embedded Pick-a-Pic v2 style shards (ingest.source)

# models built by the pipeline
BASE_MODEL = "models/base"
PICKSCORE = "models/pickscore"                 # the embedded PickScore (scorer_model stage)
VIDEO_BASE = "models/video_base"
VIDEO_FEATURES = "models/video_features"       # the embedded FID / FVD feature networks (video_features stage)
VIDEO_FID_NET = f"{VIDEO_FEATURES}/frame.safetensors"
VIDEO_FVD_NET = f"{VIDEO_FEATURES}/clip.safetensors"

# data stages
INGEST = "data/ingest"
CACHE = "data/cache"
EVAL_IMAGES = "data/eval"                      # data/eval/<checkpoint name>/

# reports written by stages
METRICS = "reports/metrics"
BASE_SAMPLES = "reports/base_model"
DATA_DOCS = "reports/data_docs"
EXPECTATIONS = "reports/data/expectations.json"
EVAL = "reports/eval"
EVAL_SUMMARY = f"{EVAL}/summary.csv"
EVAL_SCORES = f"{EVAL}/scores.parquet"
EVAL_PLOTS = "reports/plots/eval_rounds.csv"
REPORT_MD = "reports/report.md"
REPORT_HTML = "reports/report.html"
REPORT_FIGURES = "reports/figures"
PROBE = "reports/probe"
STUDY = "reports/study"

# the text-to-video pipeline (video/dvc.yaml)
VIDEO_WORLD = "data/video_world"
VIDEO_WORLD_WEB = f"{VIDEO_WORLD}/web"
VIDEO_WINNERS = f"{VIDEO_WORLD}/winners"
VIDEO_LOSERS = f"{VIDEO_WORLD}/losers"
VIDEO_REAL = f"{VIDEO_WORLD}/eval_real"
VIDEO_PROMPTS = f"{VIDEO_WORLD}/prompts.parquet"
VIDEO_INGEST = "data/video_ingest"
VIDEO_CACHE = "data/video_cache"
VIDEO_EVAL_CLIPS = "data/video_eval"           # data/video_eval/<checkpoint name>/
VIDEO_REPORTS = "reports/video"
VIDEO_EVAL = f"{VIDEO_REPORTS}/eval"
VIDEO_EVAL_SUMMARY = f"{VIDEO_EVAL}/summary.csv"
VIDEO_REPORT_MD = f"{VIDEO_REPORTS}/report.md"
VIDEO_REPORT_HTML = f"{VIDEO_REPORTS}/report.html"
VIDEO_REPORT_FIGURES = f"{VIDEO_REPORTS}/figures"


def metrics(name: str) -> str:
    """A stage's metrics JSON: reports/metrics/<name>.json."""
    return f"{METRICS}/{name}.json"


def timing_path(metrics: str | Path) -> Path:
    """Where a stage's wall-clock figures go: reports/metrics/timing/<name> next to its metrics.

    Seconds, throughput and memory differ from run to run, so they live only in these files, which
    DVC records as uncached metrics and no stage lists as a dependency: re-running a stage (after a
    crash, say) then changes nothing that anything downstream reads.
    """
    metrics = Path(metrics)
    return metrics.parent / "timing" / metrics.name


def eval_images(name: str) -> str:
    return f"{EVAL_IMAGES}/{name}"


def video_eval_clips(name: str) -> str:
    return f"{VIDEO_EVAL_CLIPS}/{name}"


def probe_record(k: int) -> str:
    """The fixed-checkpoint probe of round k (`seppo probe`): its summary; positions beside it."""
    return f"{PROBE}/round_{k}.json"


def probe_positions(k: int) -> str:
    return f"{PROBE}/round_{k}_positions.parquet"


@dataclass(frozen=True)
class Layout:
    """Paths of one chain of rounds. The image pipeline uses the defaults; a video arm a prefix
    (``video_`` for SePPO, ``video_sft_`` for a baseline) and its own theta_0 (models/video_base)."""

    root: Path = Path(".")
    prefix: str = ""
    base: str = BASE_MODEL

    def checkpoint(self, k: int) -> Path:
        return self.root / (self.base if k == 0 else f"models/{self.prefix}round_{k}")

    def bank(self, k: int) -> list[Path]:
        """The bank available to round k: theta_0 .. theta_{k-1}."""
        return [self.checkpoint(j) for j in range(k)]

    def selection(self, k: int) -> Path:
        return self.root / f"runs/{self.prefix}round_{k}/reference.json"

    def refsamples(self, k: int) -> Path:
        return self.root / f"data/{self.prefix}refsamples/round_{k}"

    def live(self, k: int) -> Path:
        return self.root / f"runs/{self.prefix}round_{k}/live"

    def positions(self, k: int) -> Path:
        """Round k's per-position anchor records (trainer._write_positions)."""
        return self.root / f"runs/{self.prefix}round_{k}/positions.parquet"

    def state(self, k: int) -> Path:
        return self.root / f"runs/state/{self.prefix}round_{k}"

    def metrics(self, k: int) -> Path:
        return self.root / metrics(f"{self.prefix}round_{k}")

    def refsamples_timing(self, k: int) -> Path:
        """Wall-clock figures of round k's reference samples: nothing depends on this file."""
        return self.root / timing_path(metrics(f"{self.prefix}refsamples_{k}"))

    def timing(self, k: int) -> Path:
        """Wall-clock figures of round k's training: nothing depends on this file."""
        return timing_path(self.metrics(k))


def video_layout(arm: str, root: Path = Path(".")) -> Layout:
    """The video chain of ``arm`` (video.arms): seppo -> models/video_round_k, sft -> models/video_sft_round_k."""
    return Layout(root, "video_" if arm == "seppo" else f"video_{arm}_", VIDEO_BASE)


def video_eval_name(arm: str, k: int) -> str:
    """Evaluation name of a video arm's round: round_k (seppo), sft_round_k, dpo_round_k."""
    return f"round_{k}" if arm == "seppo" else f"{arm}_round_{k}"
