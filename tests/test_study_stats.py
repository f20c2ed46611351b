"""The study's statistics on synthetic per-run metrics with known answers, and the aggregate built on them."""

import json

import yaml

import numpy as np
import pandas as pd
import pytest

from seppo.config import ConfigError, parse_params
from seppo.study.aggregate import aggregate, run_aggregate
from seppo.study.records import Run, build_record, effective_hash, is_done, plan_runs, record_path
from seppo.study.stats import paired_difference, prompt_only_ci, two_level_bootstrap

B = 2000


def test_constant_matrix_gives_an_exact_interval():
    e = two_level_bootstrap(np.full((3, 20), 0.25), B, 0)
    assert (e.mean, e.lo, e.hi, e.n_seeds, e.n_prompts) == (0.25, 0.25, 0.25, 3, 20)


def test_known_paired_difference_is_recovered_exactly():
    rng = np.random.default_rng(1)
    y = rng.normal(0.5, 0.2, (3, 40))  # noisy per prompt and seed, but the shift is exactly 0.1 everywhere
    d = paired_difference(y + 0.1, y, B, 0)
    assert d.mean == pytest.approx(0.1, abs=1e-12)
    assert d.lo == pytest.approx(0.1, abs=1e-12) and d.hi == pytest.approx(0.1, abs=1e-12)
    # unpaired, the same data would give a wide interval: pairing is what removes the prompt noise
    wide = two_level_bootstrap(y + 0.1, B, 0)
    assert wide.hi - wide.lo > 0.05


def test_seed_level_variance_widens_the_ci_against_one_level():
    rng = np.random.default_rng(2)
    prompts = rng.normal(0, 0.05, 50)
    x = prompts[None, :] + np.array([-0.1, 0.0, 0.1, 0.05, -0.05])[:, None]  # training seeds disagree
    e = two_level_bootstrap(x, B, 0)
    lo1, hi1 = prompt_only_ci(x, B, 0)
    assert (e.hi - e.lo) > 3 * (hi1 - lo1)
    assert e.lo < e.mean < e.hi and lo1 < x.mean() < hi1


def test_prompt_effects_shared_by_every_seed_are_not_divided_by_the_seed_count():
    """Seeds and prompts are crossed: the same prompts' difficulty recurs in every seed. Three seeds that agree
    exactly carry no more information about the prompts than one, so the CI must be as wide as one seed's
    (resampling prompts anew within each seed, the nested scheme used before, gave one sqrt(3) narrower)."""
    rng = np.random.default_rng(3)
    prompts = rng.normal(0.5, 0.2, 64)
    three = np.tile(prompts, (3, 1))
    one = two_level_bootstrap(prompts[None, :], B, 0)
    e = two_level_bootstrap(three, B, 0)
    assert e.hi - e.lo == pytest.approx(one.hi - one.lo, rel=0.1)
    lo1, hi1 = prompt_only_ci(three, B, 0)
    assert e.hi - e.lo == pytest.approx(hi1 - lo1, rel=0.1)
    # the nested scheme's width, for the record: what the fix removes
    nested = np.random.default_rng(0)
    draws = [three[nested.integers(0, 3, 3)[:, None], nested.integers(0, 64, (3, 64))].mean() for _ in range(B)]
    assert np.subtract(*np.quantile(draws, [0.975, 0.025])) < 0.7 * (e.hi - e.lo)


def test_one_seed_two_level_matches_scipy_one_level():
    x = np.random.default_rng(3).normal(0, 1, (1, 200))
    e = two_level_bootstrap(x, 4000, 0)
    lo1, hi1 = prompt_only_ci(x, 4000, 0)
    se = x.std() / np.sqrt(200)
    assert abs(e.lo - lo1) < 0.25 * se and abs(e.hi - hi1) < 0.25 * se  # same estimator, different draws


def test_bootstrap_is_seeded_and_checks_shapes():
    x = np.random.default_rng(4).normal(size=(3, 10))
    assert two_level_bootstrap(x, 500, 7) == two_level_bootstrap(x, 500, 7)
    assert two_level_bootstrap(x, 500, 7) != two_level_bootstrap(x, 500, 8)
    with pytest.raises(ValueError, match="same seeds and prompts"):
        paired_difference(x, x[:2], 100, 0)
    with pytest.raises(ValueError, match="non-finite"):
        two_level_bootstrap(np.array([[1.0, np.nan]]), 100, 0)


STUDY = {"train": {"updates_per_round": 2}, "evaluate": {"scorers": ["shapeland_utility"]},
         "study": {"rounds": 2, "seeds": [0, 1, 2], "n_boot": 500, "compare_to": ["none"],
                   "variants": {"base": {"label": "base", "train": False},
                                "none": {"label": "w/o anchor", "overrides": {"train.criterion": "none"}},
                                "sign": {"label": "sign", "overrides": {"train.criterion": "sign"}, "lr": 3e-4,
                                         "n_seeds": 2, "paper": "seppo"},
                                "robust": {"label": "robust", "pending": True,
                                           "overrides": {"train.anchor_draws": 16}}}}}


def test_matrix_plans_seeds_lr_and_skips_pending_and_base():
    p = parse_params(STUDY)
    runs = plan_runs(p)
    # seed-major: a study stopped early holds whole seeds of every variant (sign runs on 2 seeds only)
    assert [r.name for r in runs] == ["none__seed0", "sign__seed0", "none__seed1", "sign__seed1", "none__seed2"]
    assert runs[1].overrides == {"train.criterion": "sign", "train.lr": 3e-4, "train.seed": 0, "train.rounds": 2}
    assert len({r.params_hash for r in runs}) == 5
    assert effective_hash(p, runs[0].overrides) == runs[0].params_hash
    # a param every run reads changes every hash; the study's own section does not
    p2 = parse_params({**STUDY, "train": {"updates_per_round": 3}})
    p3 = parse_params({**STUDY, "study": {**STUDY["study"], "n_boot": 900}})
    assert plan_runs(p2)[0].params_hash != runs[0].params_hash
    assert plan_runs(p3)[0].params_hash == runs[0].params_hash
    # nor do the video path's sections, which no image run reads
    p4 = parse_params({**STUDY, "video_world": {"frames": 12}, "video": {"frames": 12, "arms": ["sft"],
                                                                          "train_overrides": {"lr": 1e-5}}})
    assert plan_runs(p4)[0].params_hash == runs[0].params_hash


def test_unknown_variant_key_fails_at_load_with_the_dotted_key():
    bad = json.loads(json.dumps(STUDY))
    bad["study"]["variants"]["sign"]["overrides"]["train.critrion"] = "sign"
    with pytest.raises(ConfigError, match=r"study\.variants\.sign\.overrides\.train\.critrion: unknown key"):
        parse_params(bad, "p.yaml")
    bad = json.loads(json.dumps(STUDY))
    bad["study"]["variants"]["none"]["overrides"]["world.seed"] = 3
    with pytest.raises(ConfigError, match=r"study\.variants\.none\.overrides\.world\.seed: a variant may override"):
        parse_params(bad)
    bad = json.loads(json.dumps(STUDY))
    bad["study"]["variants"]["robust"]["overrides"]["train.criterion"] = "nope"  # known keys of pending are checked
    with pytest.raises(ConfigError, match=r"study\.variants\.robust\.overrides\.train\.criterion: Input should be"):
        parse_params(bad)
    bad = json.loads(json.dumps(STUDY))
    bad["study"]["compare_to"] = ["sft"]
    with pytest.raises(ConfigError, match="compare_to names unknown variants"):
        parse_params(bad)


def _scores(values: dict[str, np.ndarray]) -> pd.DataFrame:
    """A tidy scores table: checkpoint -> (prompts, eval seeds) values of one metric."""
    rows = []
    for ckpt, v in values.items():
        for p in range(v.shape[0]):
            for s in range(v.shape[1]):
                rows.append({"checkpoint": ckpt, "round": 0 if ckpt == "base" else int(ckpt[-1]),
                             "prompt_id": f"eval-{p:04d}", "seed": s, "metric": "shapeland_utility",
                             "value": float(v[p, s])})
    return pd.DataFrame(rows)


def _write_runs(tmp_path, p, shift):
    """Records whose round_k = base + shift[variant] * k + seed offset (seed offsets identical across variants)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, (12, 2))
    for run in plan_runs(p):
        vals = {"base": base}
        for k in (1, 2):
            vals[f"round_{k}"] = base + shift[run.variant] * k + 0.02 * run.seed
        rec = build_record(run, p.study.variants[run.variant].label, _scores(vals),
                           {1: {"mean_flip_rate": 0.1 * run.seed, "oracle_flip_rate": 0.5}}, {"name": run.name})
        path = record_path(tmp_path / "reports/study", run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    return base


def test_record_holds_per_prompt_means_and_win_shares(tmp_path):
    p = parse_params(STUDY)
    base = _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1})
    run = plan_runs(p)[0]
    rec = json.loads(record_path(tmp_path / "reports/study", run).read_text())
    np.testing.assert_allclose(rec["checkpoints"]["base"]["shapeland_utility"]["per_prompt"], base.mean(1), atol=1e-7)
    assert rec["checkpoints"]["round_1"]["shapeland_utility"]["win_vs_base"] == [1.0] * 12
    assert rec["round_metrics"]["1"]["oracle_flip_rate"] == 0.5
    assert is_done(tmp_path / "reports/study", run)
    assert not is_done(tmp_path / "reports/study", Run(run.variant, run.seed, run.overrides, "other"))


def test_aggregate_recovers_known_differences(tmp_path):
    p = parse_params(STUDY)
    base = _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1})
    t, oracle = aggregate(p, __import__("seppo.study.records", fromlist=["x"]).load_records(tmp_path / "reports/study"))
    row = t[(t.variant == "sign") & (t["round"] == 2)].iloc[0]
    # sign runs seeds 0, 1: mean = base + 0.2 + 0.02 * mean(0, 1)
    assert row["mean"] == pytest.approx(base.mean() + 0.2 + 0.01, abs=1e-6)
    assert row["n_seeds"] == 2 and row["lr"] == 3e-4
    # paired on seed and prompt: the difference to none is exactly 2 * (0.1 - 0.05) = 0.1 with a zero-width CI
    assert row["diff_vs_none"] == pytest.approx(0.1, abs=1e-6)
    assert row["diff_vs_none_ci_low"] == pytest.approx(0.1, abs=1e-6)
    assert row["diff_vs_none_ci_high"] == pytest.approx(0.1, abs=1e-6) and row["diff_vs_none_seeds"] == 2
    assert row["win_rate_vs_base"] == 1.0
    b = t[t.variant == "base"].iloc[0]
    assert b["round"] == 0 and b["mean"] == pytest.approx(base.mean(), abs=1e-6)
    o = oracle[(oracle.variant == "none") & (oracle["round"] == 1)].iloc[0]
    assert o["mean_flip_rate"] == pytest.approx(0.1) and o["oracle_flip_rate"] == 0.5 and o["n_seeds"] == 3


def test_aggregate_files_are_byte_stable_and_feed_the_report(tmp_path):
    from seppo.study.report import study_section

    p = parse_params(STUDY)
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1})
    run_aggregate(p, tmp_path)
    out = tmp_path / "reports/study"
    first = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    run_aggregate(p, tmp_path)
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == first
    assert {"aggregate.csv", "aggregate.md", "oracle.csv", "curves_shapeland_utility.png"} <= set(first)
    md = "\n".join(study_section(p, tmp_path))
    assert "| SePPO | 21.57 | sign |" in md and "(n=2)" in md
    assert "| w/o anchor | 20.88 | (no variant) |" in md  # none has no `paper` key in this matrix
    assert "ground-truth utility [0, 1]" in md and "PickScore x100, Pick-a-Pic v2, SD1.5" in md
    assert study_section(p, tmp_path / "elsewhere") == []


def test_dvc_yaml_is_planned_for_the_study_rounds_and_restored_even_after_a_kill(tmp_path):
    from seppo.study.runner import DVC_YAML_BACKUP, planned_rounds

    p = parse_params({"train": {"rounds": 1}, "study": {"rounds": 3}})
    (tmp_path / "dvc.yaml").write_text("original\n")
    with planned_rounds(tmp_path, p, 3, replan=True):
        text = (tmp_path / "dvc.yaml").read_text()
        assert "train_3:" in text and "eval_round_3:" in text
        assert (tmp_path / DVC_YAML_BACKUP).read_text() == "original\n"
    assert (tmp_path / "dvc.yaml").read_text() == "original\n" and not (tmp_path / DVC_YAML_BACKUP).exists()
    # a study killed inside the context left its plan in dvc.yaml and the backup: the next one restores the original
    (tmp_path / DVC_YAML_BACKUP).write_text("original\n")
    (tmp_path / "dvc.yaml").write_text(text)
    with planned_rounds(tmp_path, p, 3, replan=True):
        pass
    assert (tmp_path / "dvc.yaml").read_text() == "original\n"
    with planned_rounds(tmp_path, p, 3, replan=False):
        assert (tmp_path / "dvc.yaml").read_text() == "original\n"


def test_common_overrides_apply_to_every_trained_variant_and_are_validated():
    d = json.loads(json.dumps(STUDY))
    d["study"]["common"] = {"train.ref_samples": "per_prompt", "train.criterion": "sign"}
    runs = plan_runs(parse_params(d))
    assert all(r.overrides["train.ref_samples"] == "per_prompt" for r in runs)
    assert runs[0].overrides["train.criterion"] == "none"  # the variant's own override wins
    d["study"]["common"] = {"evaluate.seeds": [0]}
    with pytest.raises(ConfigError, match=r"study\.common\.evaluate\.seeds: the study may override only train"):
        parse_params(d)
    d["study"]["common"] = {"train.reference_errors": "precomputed"}
    d["study"]["variants"]["sft"] = {"label": "SFT", "overrides": {"train.loss": "sft"}}
    with pytest.raises(ConfigError, match=r"study\.variants\.sft\.overrides\.train: reference_errors=precomputed needs "
                       r"loss=seppo \(got loss='sft'\) \(study.common applied first\)$"):
        parse_params(d)


def test_shared_pins_reach_every_run_and_its_hash_and_are_validated():
    d = json.loads(json.dumps(STUDY))
    d["study"]["shared"] = {"base_model.unet_steps": 800, "scorer_model.contrastive_steps": 800}
    d["base_model"], d["scorer_model"] = {"unet_steps": 400}, {"contrastive_steps": 400}
    pinned = plan_runs(parse_params(d))
    assert all(r.overrides["base_model.unet_steps"] == 800 for r in pinned)
    # a run with the pins has the hash of a run whose params.yaml held those values: records stay valid
    # when the default's recipe changes and the study pins the one it ran on
    plain = plan_runs(parse_params({**STUDY, "base_model": {"unet_steps": 800},
                                    "scorer_model": {"contrastive_steps": 800}}))
    assert [r.params_hash for r in pinned] == [r.params_hash for r in plain]
    assert [r.params_hash for r in plan_runs(parse_params({**d, "study": STUDY["study"]}))] != \
        [r.params_hash for r in plain]
    # a knob added after the recorded runs is out of the hash at the value the code used to fix (8 heads), in it
    # at any other: the records stay valid, a run with 2 heads is a different run
    legacy = plan_runs(parse_params({**STUDY, "base_model": {"unet_attention_heads": 8}}))
    cheap = plan_runs(parse_params({**STUDY, "base_model": {"unet_attention_heads": 2}}))
    from seppo.study.records import LEGACY_VALUES
    assert LEGACY_VALUES[("base_model", "unet_attention_heads")] == 8
    assert len({r.params_hash for r in legacy} & {r.params_hash for r in cheap}) == 0
    d["study"]["shared"] = {"train.lr": 1e-4, "evaluate.seeds": [0]}
    with pytest.raises(ConfigError) as err:
        parse_params(d)
    assert "study.shared.evaluate.seeds: may pin only keys of the shared stages' sections" in str(err.value)
    assert "study.shared.train.lr: may pin only" in str(err.value)
    d["study"]["shared"] = {"base_model.unet_steps": 0}
    with pytest.raises(ConfigError, match=r"study\.variants\.none\.overrides\.base_model\.unet_steps: .*"
                       r"\(study.shared applied first\)"):
        parse_params(d)


def test_the_shared_run_computes_exactly_the_stages_no_train_key_reaches():
    from seppo.config import load_params
    from seppo.study.runner import shared_command, shared_stages

    shared = ["world", "base_model", "ingest", "cache", "scorer_model", "eval_base"]  # validate: no output read
    assert shared_stages(load_params("params.yaml")) == shared
    # the STUDY test params score with the ground truth only: the embedded PickScore is no stage of its graph
    p = parse_params(STUDY)
    assert shared_stages(p) == [s for s in shared if s != "scorer_model"]
    assert shared_command(p) is None  # nothing pinned: the workspace's own stages are shared
    d = json.loads(json.dumps(STUDY))
    d["study"]["shared"] = {"base_model.unet_steps": 800}
    assert shared_command(parse_params(d))[2:] == ["run", "--temp", "--name", "study-shared",
                                                   "-S", "++base_model.unet_steps=800", *shared_stages(p)]


def test_print_queue_lists_only_the_missing_runs(tmp_path):
    from seppo.study.runner import queue_commands

    p = parse_params(STUDY)
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1})
    assert queue_commands(p, tmp_path) == []
    (tmp_path / "reports/study/runs/sign__seed1.json").unlink()
    assert queue_commands(p, tmp_path) == [
        "dvc exp run --queue --name sign__seed1 -S ++train.criterion=sign -S ++train.lr=0.0003 "
        "-S ++train.rounds=2 -S ++train.seed=1 evaluate"]
    # a pinned theta_0 recipe: its stages are computed first, with every core, and every queued run carries the pins
    d = json.loads(json.dumps(STUDY))
    d["study"]["shared"] = {"base_model.unet_attention_heads": 8}
    lines = queue_commands(parse_params(d), tmp_path)
    assert lines[0].startswith("dvc exp run --temp --name study-shared -S ++base_model.unet_attention_heads=8 world ")
    assert len(lines) == 1 + 5 and all("++base_model.unet_attention_heads=8" in x for x in lines[1:])


def test_experiment_found_after_the_repository_moved_on(tmp_path):
    """A study runs for hours; commits made meanwhile move HEAD off the experiments' baseline."""
    import subprocess

    from seppo.study.runner import StudyError, _experiment_rev

    def git(*a):
        return subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=t@t.invalid", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "a")
    old = git("rev-parse", "HEAD")
    git("update-ref", f"refs/exps/{old[:2]}/{old[2:]}/sign__seed0", old)
    git("-c", "user.email=t@t.invalid", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "b")
    new = git("rev-parse", "HEAD")
    assert _experiment_rev(tmp_path, "sign__seed0") == old  # found on the old baseline
    git("update-ref", f"refs/exps/{new[:2]}/{new[2:]}/sign__seed0", new)
    assert _experiment_rev(tmp_path, "sign__seed0") == new  # this baseline's first
    with pytest.raises(StudyError, match="no experiment named none__seed0"):
        _experiment_rev(tmp_path, "none__seed0")


def test_lr_sweep_points_get_their_own_table_and_the_better_lr_is_picked(tmp_path):
    from seppo.study.aggregate import lr_sweep, sweep_points
    from seppo.study.records import load_records

    d = json.loads(json.dumps(STUDY))
    # none at another lr on the first seed only: the same overrides, so a sweep point of none (not a variant of
    # its own in the main table); sign differs in its overrides, so it is no sweep point even at another lr
    d["study"]["variants"]["none_lo"] = {"label": "w/o anchor, lr 1e-4", "overrides": {"train.criterion": "none"},
                                         "lr": 1e-4, "n_seeds": 1}
    p = parse_params(d)
    assert sweep_points(p) == {"none_lo": "none"}
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1, "none_lo": 0.08})
    s = lr_sweep(p, load_records(tmp_path / "reports/study"))
    assert set(s.seed) == {0} and set(s.method) == {"none"}
    last = s[s["round"] == 2].set_index("variant")
    # paired on prompts of seed 0: 2 * (0.08 - 0.05) exactly, zero-width CI; the faster lr wins round 2
    assert last.loc["none_lo", "diff_vs_main"] == pytest.approx(0.06, abs=1e-6)
    assert last.loc["none_lo", "diff_ci_low"] == pytest.approx(0.06, abs=1e-6)
    assert bool(last.loc["none_lo", "picked"]) and not bool(last.loc["none", "picked"])
    assert last.loc["none", "lr"] == p.train.lr and last.loc["none_lo", "lr"] == 1e-4
    run_aggregate(p, tmp_path)
    md = (tmp_path / "reports/study/aggregate.md").read_text()
    main_table = md.split("## Learning-rate sweep")[0]
    assert "w/o anchor, lr 1e-4" not in main_table and "| w/o anchor |" in main_table
    assert "| w/o anchor | **0.0001** |" in md and "+0.060 | [0.060, 0.060] |" in md
    assert (tmp_path / "reports/study/lr_sweep.csv").exists()
    # a point run on every seed (e.g. the lr the sweep did not pick) stays in the main table as well
    d["study"]["variants"]["none_lo"].pop("n_seeds")
    p = parse_params(d)
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1, "none_lo": 0.08})
    run_aggregate(p, tmp_path)
    md = (tmp_path / "reports/study/aggregate.md").read_text()
    assert "| w/o anchor, lr 1e-4 | 0 1 2 |" in md.split("## Learning-rate sweep")[0]


def test_the_study_best_preset_is_exactly_the_study_run_it_names():
    """configs/shapeland-study-best.yaml applied to params.yaml = the study's `none` run (lr 5e-5, 5 rounds) on the
    study's pinned theta_0 and scorer: same effective params hash as the recorded run."""
    from pathlib import Path

    from seppo.params_edit import merge, read_mapping

    params = parse_params(read_mapping(Path("params.yaml")))
    preset = parse_params(merge(read_mapping(Path("params.yaml")), read_mapping(Path("configs/shapeland-study-best.yaml"))))
    run = next(r for r in plan_runs(params) if r.name == "none__seed0")
    assert effective_hash(preset, {}) == run.params_hash
    # without the pins it would be a different run (the default's cheaper theta_0)
    assert effective_hash(preset, {"base_model.unet_attention_heads": 2}) != run.params_hash


def test_params_written_before_a_knob_existed_hash_at_its_legacy_value():
    """An experiment's params.yaml from before scorer_model.adamw_impl existed ran with torch's for-loop AdamW, not
    with today's default (fused): read with today's defaults, a stale experiment passed for a current one."""
    from seppo.study.records import effective_hash, with_legacy_values

    current = {**json.loads(json.dumps(STUDY)), "scorer_model": {"adamw_impl": "fused"}}
    old = {**json.loads(json.dumps(STUDY)), "scorer_model": {"contrastive_steps": 800}}
    today = parse_params(old)
    then = parse_params(with_legacy_values(old, current))
    assert (today.scorer_model.adamw_impl, then.scorer_model.adamw_impl) == ("fused", "for-loop")
    pinned = parse_params({**old, "scorer_model": {"contrastive_steps": 800, "adamw_impl": "for-loop"}})
    assert effective_hash(then, {}) == effective_hash(pinned, {}) != effective_hash(today, {})
    assert old["scorer_model"] == {"contrastive_steps": 800}  # the caller's dict is left as it was
    # a knob that neither file sets means today's default on both sides (the same era's params file)
    assert with_legacy_values(old, {**current, "scorer_model": {}}) == old


def test_beta_points_get_their_own_table_with_round_one_calibration_and_a_pick(tmp_path):
    from seppo.study.aggregate import beta_points, beta_sweep, one_seed_points
    from seppo.study.records import load_records

    d = json.loads(json.dumps(STUDY))
    d["study"]["variants"]["none_b100"] = {"label": "w/o anchor, beta 100", "n_seeds": 1,
                                           "overrides": {"train.criterion": "none", "train.beta": 100.0}}
    p = parse_params(d)
    assert beta_points(p) == {"none_b100": "none"} and "none_b100" in one_seed_points(p)
    assert "none_b100" not in __import__("seppo.study.aggregate", fromlist=["x"]).sweep_points(p)  # not an lr point
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1, "none_b100": 0.02})
    recs = load_records(tmp_path / "reports/study")
    for r in recs:  # crafted round-1 calibration: beta 100 is unsaturated, beta 2000 saturated
        r["round_metrics"]["1"].update(logit_abs_median=0.3 if r["variant"] == "none_b100" else 12.0,
                                       share_saturated=0.0 if r["variant"] == "none_b100" else 0.9)
    s = beta_sweep(p, recs).set_index("variant")
    assert set(s.index) == {"none", "none_b100"} and set(s.seed) == {0}
    assert s.loc["none_b100", "beta"] == 100.0 and s.loc["none", "beta"] == p.train.beta
    assert s.loc["none_b100", "r1_logit_abs_median"] == 0.3 and s.loc["none", "r1_share_saturated"] == 0.9
    # paired on the prompts of seed 0: round 2 differs by 2 * (0.02 - 0.05) exactly; the larger beta is picked
    assert s.loc["none_b100", "diff_vs_main"] == pytest.approx(-0.06, abs=1e-6)
    assert bool(s.loc["none", "picked"]) and not bool(s.loc["none_b100", "picked"])
    run_aggregate(p, tmp_path)
    md = (tmp_path / "reports/study/aggregate.md").read_text()
    assert "## Beta calibration" in md and "w/o anchor, beta 100" not in md.split("## Beta calibration")[0]


def test_aggregate_refuses_records_of_two_base_models(tmp_path):
    from seppo.study.records import load_records

    p = parse_params(STUDY)
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1})
    f = tmp_path / "reports/study/runs/sign__seed1.json"
    r = json.loads(f.read_text())
    r["checkpoints"]["base"]["shapeland_utility"]["per_prompt"][0] += 0.01  # another machine's theta_0
    r["experiment"]["machine"] = "Intel, AVX-512"
    f.write_text(json.dumps(r))
    with pytest.raises(ValueError, match=r"sign__seed1 was evaluated against another base model.*AVX-512"):
        run_aggregate(p, tmp_path)
    assert len(load_records(tmp_path / "reports/study")) == 5


def test_auc_summary_resamples_runs_and_counts_cells_below_chance():
    from seppo.study.aggregate import auc_summary

    def rec(v, s, aucs, ci=None):
        return {"variant": v, "seed": s, "round_metrics": {
            str(k + 1): {"loss_draw_auc": a, "loss_draw_auc_ci95": ci, "anchor_draws": 0, "criterion": "none"}
            for k, a in enumerate(aucs)}}

    t = auc_summary([rec("a", 0, [0.4, 0.4], [0.3, 0.45]), rec("a", 1, [0.5, 0.5], [0.45, 0.55])], 500, 0)
    row = t.set_index("statistic").loc["loss_draw_auc"]
    assert row["mean"] == pytest.approx(0.45) and row["runs"] == 2 and row["cells"] == 4
    assert row["ci_low"] == pytest.approx(0.4) and row["ci_high"] == pytest.approx(0.5)  # two runs: 0.4, 0.45 or 0.5
    assert row["cells_ci_below_half"] == 2 and row["cells_ci_above_half"] == 0
    assert "anchor_auc_k" not in set(t.statistic)  # no multi-draw run


def test_study_can_be_limited_to_some_seeds(tmp_path):
    from seppo.study.runner import run_study

    p = parse_params(STUDY)
    _write_runs(tmp_path, p, {"none": 0.05, "sign": 0.1})
    res = run_study(tmp_path, p, seeds=[1], replan=False, echo=lambda m: None)
    assert res["ran"] == [] and res["skipped"] == ["none__seed1", "sign__seed1"]
    res = run_study(tmp_path, p, seeds=[2], only=["none"], replan=False, echo=lambda m: None)
    assert res["skipped"] == ["none__seed2"]


def test_the_study_plans_for_the_conditional_reads_of_its_runs(tmp_path):
    from seppo.planning.dvc import build
    from seppo.study.runner import plan_branches, planned_rounds

    d = json.loads(json.dumps(STUDY))
    d["study"]["variants"]["reward"] = {"label": "reward", "overrides": {"train.criterion": "reward"}}
    p = parse_params(d)
    runs = plan_runs(p)
    assert plan_branches([r for r in runs if r.variant != "reward"]) == {}
    assert plan_branches(runs) == {"criterion": "reward"}
    # the plan every run shares makes refsamples depend on the criterion: a reward run cannot restore a none run's
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with planned_rounds(tmp_path, p, 2, True, plan_branches(runs)):
        stages = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]
        assert "train.criterion" in stages["refsamples_1"]["params"]
    assert (tmp_path / "dvc.yaml").read_text() == "stages: {}\n"
    assert "train.criterion" not in build(p)["stages"]["refsamples_1"]["params"]
