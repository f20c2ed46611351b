"""Stage params and code deps in dvc.yaml: exactly what each stage's code reads and imports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seppo.planning import table as S
from seppo.planning.code_deps import NOT_CODE_DEPS, closure, command_modules, dep_paths
from seppo.config import Params, parse_params
from seppo.planning.dvc import build, render

from .params_reads import reads

ROOT = Path(__file__).resolve().parents[1]
# whole-section dumps that are not inputs of the stage's outputs
DUMP_NOT_INPUT = {"train": "trainer._config_hash: identity of the resume state, not an input of theta_k"}
# a non-constant schedule makes `train` read train.rounds, precomputed reference errors make
# `refsamples` read training's draws and autocast (stages.conditional_reads)
# `refsamples` read training's draws and autocast, criterion=reward makes it score with evaluate.models'
# scorer (stages.conditional_reads)
ALL_BRANCHES = parse_params({"train": {"lr_schedule": "cosine", "reference_errors": "precomputed",
                                       "criterion": "reward"}})


def mismatch(stage: str) -> tuple[set, set]:
    """(keys read but not declared, keys declared but not read) for one stage."""
    found = reads(f"seppo.cli:{stage}")  # the command the stage runs
    dumps = {k.split(".")[0] for k in found if k.endswith(".*")}
    found = {k for k in found if not k.endswith(".*")}
    declared = S.keys_of(stage, ALL_BRANCHES)
    for section in dumps - set(DUMP_NOT_INPUT if stage == "train" else ()):
        found |= {k for k in declared if k.startswith(section + ".")}  # a dump reads every declared key
    return found - declared, declared - found


@pytest.mark.parametrize("stage", sorted(S.STAGES))
def test_declared_params_are_exactly_what_the_code_reads(stage):
    undeclared, unread = mismatch(stage)
    assert not undeclared, f"{stage} reads {sorted(undeclared)}: declare them in src/seppo/planning/table.py"
    assert not unread, f"{stage} declares {sorted(unread)} but its code never reads them (src/seppo/planning/table.py)"


def test_the_check_fails_on_an_undeclared_or_unread_key(monkeypatch):
    stage = S.STAGES["refsamples"]
    without_seed = tuple(k for k in stage.reads if k != "train.seed")
    monkeypatch.setitem(S.STAGES, "refsamples", S.Stage(without_seed))
    assert mismatch("refsamples") == ({"train.seed"}, set())
    monkeypatch.setitem(S.STAGES, "refsamples", S.Stage((*stage.reads, "train.lr")))
    assert mismatch("refsamples") == (set(), {"train.lr"})


def test_the_analysis_follows_calls_and_aliases():
    # lr_factor is called from run_train and reads cfg.lr_warmup; the report reads `tr = params.train`
    assert "train.lr_warmup" in reads("seppo.training.trainer:run_train")
    assert {"train.beta", "base_model.source"} <= reads("seppo.reports.build:run_report")
    # precompute_reference_errors is reached from run_refsamples, and reads no training-only key
    r = reads("seppo.training.reference_samples:run_refsamples")
    assert "train.ref_batch_size" in r and not {"train.lr", "train.beta", "train.oracle_margin"} & r
    assert {"train.criterion", "train.reward_scorer"} <= r  # criterion=reward scores in this stage


def test_criterion_reaches_only_training_and_the_report():
    stages = build(parse_params({"train": {"rounds": 3}}))["stages"]
    with_criterion = sorted(n for n, s in stages.items() if "train.criterion" in s.get("params", [])
                            or "train" in s.get("params", []))
    assert with_criterion == ["report", "train_1", "train_2", "train_3"]
    for k in (1, 2, 3):  # reference samples and everything upstream of them stay cached
        assert not any(p.startswith("train.") and p not in S.keys_of("refsamples")
                       for p in stages[f"refsamples_{k}"]["params"])


def test_anchor_and_noise_keys_reach_refsamples_only_when_it_precomputes():
    in_step = build(parse_params({}))["stages"]["refsamples_1"]["params"]
    pre = build(parse_params({"train": {"reference_errors": "precomputed"}}))["stages"]["refsamples_1"]["params"]
    keys = {"train.noise_offset", "train.anchor_draws", "train.mixed_precision"}
    assert not keys & set(in_step) and keys <= set(pre)
    assert "train.oracle" in in_step and "train.anchor_margin_z" not in pre
    monkeypatch_free = S.Stage(("train.nosie_offset",))  # a typo is an error, not a silent skip
    S.STAGES["x"] = monkeypatch_free
    try:
        with pytest.raises(KeyError, match="train.nosie_offset"):
            S.params_of("x")
    finally:
        del S.STAGES["x"]


def test_cosine_schedule_makes_training_depend_on_rounds():
    assert "train.rounds" not in build(parse_params({}))["stages"]["train_1"]["params"]
    assert "train.rounds" in build(ALL_BRANCHES)["stages"]["train_1"]["params"]


def test_no_yaml_anchors():
    text = render(parse_params({"train": {"rounds": 3}}))
    assert "&id" not in text and "*id" not in text
    assert "&" not in (ROOT / "dvc.yaml").read_text()


def test_params_yaml_spells_out_every_key():
    # why seppo/config.py is not a code dep: no stage ever runs on a default that DVC cannot see
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    missing = [f"{s}.{k}" for s, f in Params.model_fields.items() for k in f.annotation.model_fields
               if k not in (data.get(s) or {})]
    assert not missing, f"params.yaml lacks {missing}"


def test_code_deps_are_every_module_the_stage_imports():
    """Import each stage's module in a fresh interpreter state and compare with its deps in dvc.yaml."""
    stages = {**yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"],
              **yaml.safe_load((ROOT / "video/dvc.yaml").read_text())["stages"]}
    plan = {"select": "select_1", "refsamples": "refsamples_1", "train": "train_1", "eval_generate": "eval_base",
            "video_select": "video_select_1", "video_refsamples": "video_refsamples_1", "video_train": "video_train_1",
            "video_eval_generate": "video_eval_base"}
    script = (
        "import importlib, json, sys\n"
        "out = {}\n"
        "for stage, mods in json.loads(sys.argv[1]).items():\n"
        "    for k in [k for k in sys.modules if k == 'seppo' or k.startswith('seppo.')]:\n"
        "        del sys.modules[k]\n"
        "    for m in mods:\n"
        "        importlib.import_module(m)\n"
        "    out[stage] = sorted(k for k in sys.modules if k == 'seppo' or k.startswith('seppo.'))\n"
        "print(json.dumps(out))\n")
    commands = {name: command_modules(name) for name in S.STAGES}
    res = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    for name in S.STAGES:
        deps = set(stages[plan.get(name, name)]["deps"])
        for m in loaded[name]:  # module-level imports, as Python runs them
            if m in NOT_CODE_DEPS:
                continue
            path = "src/" + m.replace(".", "/")
            assert f"{path}.py" in deps or f"{path}/__init__.py" in deps, (name, m)
    # function-local imports count too (evaluate's grid module, refsamples' trainer import)
    assert "src/seppo/imaging/grids.py" in stages["evaluate"]["deps"]
    # the refsamples stage shares the forwards with training (forward.py), not the training loop
    assert "src/seppo/training/forward.py" in stages["refsamples_1"]["deps"]
    assert "src/seppo/training/trainer.py" not in stages["refsamples_1"]["deps"]


def test_import_closure_on_a_crafted_package(tmp_path):
    pkg = tmp_path / "src" / "seppo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")   # function-local, submodule
    (pkg / "sub" / "b.py").write_text("from ..c import x\nimport json\n")  # relative, two levels up
    (pkg / "c.py").write_text("x = 1\n")
    (pkg / "config.py").write_text("")
    (pkg / "d.py").write_text("import seppo.a\nfrom . import config\n")   # not reached from a
    assert closure(["seppo.a"], pkg) == ["seppo", "seppo.a", "seppo.c", "seppo.sub", "seppo.sub.b"]
    assert dep_paths(["seppo.sub.b"], pkg) == ["src/seppo/c.py", "src/seppo/sub/__init__.py", "src/seppo/sub/b.py"]
    assert dep_paths(["seppo.d"], pkg) == ["src/seppo/a.py", "src/seppo/c.py", "src/seppo/d.py",
                                           "src/seppo/sub/__init__.py", "src/seppo/sub/b.py"]  # no config.py


def test_the_analysis_on_a_crafted_stage(tmp_path):
    pkg = tmp_path / "src" / "seppo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text(
        "def lr_of(state):\n    return state.cfg.lr\n\n"            # untyped holder of a `cfg`
        "def unused(cfg: TrainConfig):\n    return cfg.criterion\n")   # only referenced: counted too
    (pkg / "stage.py").write_text(
        "from dataclasses import dataclass\n"
        "from .helpers import lr_of\n\n"
        "@dataclass\nclass State:\n    cfg: TrainConfig\n\n"
        "def run(cfg: TrainConfig, other):\n"
        "    sampling = cfg.ref_sampling\n"
        "    steps = sampling.steps\n"          # nested: part of train.ref_sampling
        "    other.beta\n"                      # not a config: not a read
        "    lr_of(State(cfg))\n"
        "    def later():\n        from . import helpers\n        return helpers.unused\n"
        "    return cfg.seed\n")
    assert reads("seppo.stage:run", pkg) == {"train.ref_sampling", "train.lr", "train.seed", "train.criterion"}


def test_a_stage_runs_the_modules_its_command_imports():
    # a command imports its stage module (seppo/stages/<name>.py), whose closure holds the library code
    assert command_modules("train") == ["seppo.stages.train"]
    assert command_modules("video_train") == ["seppo.stages.video_train"]
    assert {"seppo.training.trainer", "seppo.training.plan", "seppo.layout"} <= set(closure(["seppo.stages.train"]))
    assert "seppo.data.ingest" in closure(command_modules("ingest"))
    assert set(S.STAGES) <= {c.callback.__name__ for c in __import__("seppo.cli").cli.app.registered_commands}
    with pytest.raises(KeyError, match="no command function"):
        command_modules("nope")


def test_every_stage_has_its_entry_point_and_command():
    """One folder holds every stage's entry point: seppo/stages/<name>.py, run by `seppo <name>`, and nothing else."""
    from seppo import cli

    entries = {p.stem for p in (ROOT / "src/seppo/stages").glob("*.py") if not p.stem.startswith("_")}
    assert entries == set(S.STAGES)
    commands = {c.name or c.callback.__name__: c.callback.__name__ for c in cli.app.registered_commands}
    for name in S.STAGES:
        assert commands.get(name.replace("_", "-")) == name, name
        assert command_modules(name) == [f"seppo.stages.{name}"], name
