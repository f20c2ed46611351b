"""The video study (`seppo video-study`): its runs, plans, records and aggregate, on crafted inputs with known answers."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from seppo.config import ConfigError, parse_params, video_study_conflicts
from seppo.study import video
from seppo.study.aggregate import aggregate
from seppo.study.records import plan_runs

VARIANTS = {
    "base": {"label": "base", "train": False},
    "none": {"label": "w/o anchor", "lr": 5e-5, "overrides": {"train.loss": "seppo", "train.criterion": "none"}},
    "sft": {"label": "SFT", "lr": 2e-4, "overrides": {"train.loss": "sft"}},
    "dpo": {"label": "DPO", "n_seeds": 1, "overrides": {"train.loss": "dpo", "train.beta": 1000.0}},
}


def _params(**study):
    return parse_params({"video_study": {"rounds": 2, "seeds": [0, 1], "variants": VARIANTS,
                                         "compare_to": ["base", "sft"], **study}})


def test_runs_are_one_arm_each_named_apart_from_the_image_study_and_hash_the_video_sections():
    p = _params()
    runs = plan_runs(p, "video_study")
    assert [r.name for r in runs] == ["video-none__seed0", "video-sft__seed0", "video-dpo__seed0",
                                      "video-none__seed1", "video-sft__seed1"]
    assert {r.name: r.overrides["video.arms"] for r in runs}["video-dpo__seed0"] == ["dpo"]
    assert runs[0].overrides["video.arms"] == ["seppo"] and runs[0].overrides["train.lr"] == 5e-5
    assert runs[0].overrides["train.rounds"] == 2 and runs[3].overrides["train.seed"] == 1
    # theta_0 of the video arms is part of what a video run computed: its hash moves with it ...
    moved = parse_params({**yaml.safe_load(yaml.safe_dump(p.model_dump())), "video_base": {"steps": 10}})
    assert plan_runs(moved, "video_study")[0].params_hash != runs[0].params_hash
    # ... but not with the study's own bookkeeping, nor does the image study move with the video study
    booked = _params(n_boot=500, jobs=1)
    assert [r.params_hash for r in plan_runs(booked, "video_study")] == [r.params_hash for r in runs]
    assert [r.params_hash for r in plan_runs(p)] == [r.params_hash for r in plan_runs(parse_params({}))]


def test_a_variant_key_that_video_train_overrides_replaces_is_named_before_anything_runs():
    p = parse_params({"video": {"train_overrides": {"micro_batch": 4, "rounds": 2}},
                      "video_study": {"variants": {**VARIANTS, "big": {
                          "label": "big batch", "overrides": {"train.loss": "sft", "train.micro_batch": 16}}}}})
    bad = video_study_conflicts(p)
    assert any("video_study.variants.big.overrides.train.micro_batch" in b for b in bad), bad
    assert any(b.startswith("video.train_overrides.rounds") for b in bad), bad
    assert video_study_conflicts(_params()) == []
    with pytest.raises(ConfigError, match="video_study.*shared"):
        parse_params({"video_study": {"shared": {"base_model.unet_steps": 5}}})
    with pytest.raises(ConfigError, match="video_study.variants.x.overrides.video.frames"):
        parse_params({"video_study": {"variants": {"x": {"label": "x", "overrides": {"video.frames": 4}}}}})


def test_the_plan_of_an_arm_holds_that_arm_only_and_evaluates_every_round():
    st = yaml.safe_load(video.plan_text(_params(), "dpo", 3))["stages"]
    trained = sorted(n for n in st if "_train_" in n)
    assert trained == ["video_dpo_train_1", "video_dpo_train_2", "video_dpo_train_3"]
    assert not any("refsamples" in n for n in st)  # DPO reads real losers, no reference samples
    assert st["video_evaluate"]["cmd"] == ("seppo video-evaluate --clips data/video_eval/base --clips "
                                           "data/video_eval/dpo_round_1 --clips data/video_eval/dpo_round_2 "
                                           "--clips data/video_eval/dpo_round_3")
    seppo = yaml.safe_load(video.plan_text(_params(), "seppo", 2))["stages"]
    assert "video_refsamples_2" in seppo and not any("sft" in n for n in seppo)


def _wide(arm_names, rng):
    rows = []
    for ck in arm_names:
        for pid in ("p0", "p1", "p2"):
            for seed in (0, 1):
                rows.append({"checkpoint": ck, "prompt_id": pid, "prompt": pid, "seed": seed, "sample_seed": 7,
                             "utility": rng.uniform(), "psnr": rng.uniform(10, 20), "ssim": rng.uniform()})
    return pd.DataFrame(rows)


def test_a_record_maps_the_arms_checkpoints_to_rounds_with_hand_computed_means():
    rng = np.random.default_rng(0)
    wide = _wide(["base", "sft_round_1", "sft_round_2"], rng)
    summary = pd.DataFrame([{"checkpoint": c, "metric": m, "mean": v} for c, m, v in [
        ("base", "fid", 17.5), ("sft_round_1", "fid", 16.0), ("sft_round_2", "fvd", 30.25),
        ("sft_round_2", "utility", 0.4)]])
    buf = io.BytesIO()
    wide.to_parquet(buf)
    files = {video.SCORES: buf.getvalue(), video.SUMMARY: summary.to_csv(index=False).encode(),
             "reports/metrics/video_sft_round_2.json": json.dumps({"loss": 0.5}).encode()}
    run = next(r for r in plan_runs(_params(), "video_study") if r.variant == "sft")
    rec = video.collect(files.get, run, "SFT", 2, {"rev": "abc"})
    assert rec["arm"] == "sft" and sorted(rec["checkpoints"]) == ["base", "round_1", "round_2"]
    got = rec["checkpoints"]["round_2"]["clip_utility"]["per_prompt"]
    want = wide[wide.checkpoint == "sft_round_2"].groupby("prompt_id").utility.mean().to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-8)
    b = wide[wide.checkpoint == "base"].set_index(["prompt_id", "seed"]).utility
    r2 = wide[wide.checkpoint == "sft_round_2"].set_index(["prompt_id", "seed"]).utility
    np.testing.assert_allclose(rec["checkpoints"]["round_2"]["clip_utility"]["win_vs_base"],
                               (r2 > b).groupby(level=0).mean().to_numpy(), atol=1e-8)
    assert rec["set_metrics"] == {"base": {"fid": 17.5}, "round_1": {"fid": 16.0}, "round_2": {"fvd": 30.25}}
    assert rec["round_metrics"] == {"2": {"loss": 0.5}}
    with pytest.raises(ValueError, match=r"\['round_1'\].*not arm sft's"):
        video.collect({**files, video.SCORES: _parquet(_wide(["base", "round_1"], rng))}.get, run, "SFT", 2, {})


def _parquet(df):
    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


def _record(variant, seed, base, r1):
    ids = [f"p{i}" for i in range(len(base))]
    return {"variant": variant, "seed": seed, "label": variant, "prompt_ids": ids, "overrides": {},
            "checkpoints": {"base": {"clip_utility": {"per_prompt": list(base)}},
                            "round_1": {"clip_utility": {"per_prompt": list(r1)}}},
            "set_metrics": {"base": {"fid": 10.0}, "round_1": {"fid": 8.0 + seed}}}


def test_the_difference_against_theta_0_is_paired_on_the_runs_own_prompts():
    p = parse_params({"video_study": {"rounds": 1, "seeds": [0, 1], "variants": VARIANTS,
                                      "compare_to": ["base", "sft"], "n_boot": 200}})
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 20)
    recs = [_record("none", s, base, base + 0.05) for s in (0, 1)] + \
        [_record("sft", s, base, base - 0.02) for s in (0, 1)]
    table, _ = aggregate(video.view(p), recs)
    row = table[(table.variant == "none") & (table["round"] == 1)].iloc[0]
    assert row.diff_vs_base == pytest.approx(0.05) and row.diff_vs_base_ci_low == pytest.approx(0.05)
    assert row.diff_vs_sft == pytest.approx(0.07)
    sft = table[(table.variant == "sft") & (table["round"] == 1)].iloc[0]
    assert sft.diff_vs_base == pytest.approx(-0.02)
    assert pd.isna(sft.get("diff_vs_sft", np.nan))  # never against itself
    sets = video.set_metric_table(p, recs)
    fid1 = sets[(sets.variant == "none") & (sets["round"] == 1) & (sets.metric == "fid")].iloc[0]
    assert (fid1["mean"], fid1["min"], fid1["max"], fid1.n_seeds) == (8.5, 8.0, 9.0, 2)
    assert len(sets[(sets["round"] == 0)]) == 1  # theta_0's FID once, not once per variant


def test_the_video_report_gains_the_study_section_only_once_the_study_has_run(tmp_path):
    from seppo.reports.video_report import _study_section

    p = _params(out="study")
    figs = tmp_path / "figs"
    figs.mkdir()
    assert _study_section(p, tmp_path, figs) == []
    (tmp_path / "study").mkdir()
    pd.DataFrame([
        {"variant": "base", "label": "base", "metric": "clip_utility", "round": 0, "seeds": "shared", "lr": None,
         "mean": 0.4, "ci_low": 0.35, "ci_high": 0.45},
        {"variant": "none", "label": "w/o anchor", "metric": "clip_utility", "round": 2, "seeds": "0 1", "lr": 5e-5,
         "mean": 0.43, "ci_low": 0.4, "ci_high": 0.46, "diff_vs_base": 0.03, "diff_vs_base_ci_low": 0.01,
         "diff_vs_base_ci_high": 0.05}]).to_csv(tmp_path / "study" / "aggregate.csv", index=False)
    md = "\n".join(_study_section(p, tmp_path, figs))
    assert "| w/o anchor | 0 1 | 5e-05 | 0.430 [0.400, 0.460] | +0.030 [0.010, 0.050] |" in md
    assert "round 2" in md


def test_the_reports_flag_a_video_study_recorded_under_another_theta_0(tmp_path):
    from seppo.study.records import record_path

    p = _params(out="study")
    runs = plan_runs(p, "video_study")
    assert video.stale_note(p, tmp_path) == []  # nothing recorded yet
    for r in runs[:2]:
        path = record_path(tmp_path / "study", r)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"params_hash": r.params_hash}))
    assert video.stale_note(p, tmp_path) == []  # the records match today's plan
    # theta_0's recipe changes: the same records now belong to another study
    moved = parse_params({**yaml.safe_load(yaml.safe_dump(p.model_dump())), "video_base": {"steps": 10}})
    note = video.stale_note(moved, tmp_path)
    assert note and note[0].startswith("**Stale: 2 of the 2 recorded runs")


def test_a_partly_re_run_study_aggregates_todays_runs_and_names_the_stale_ones_it_leaves_out(tmp_path):
    """theta_0's recipe changed and the study re-ran only some runs: the records left from the old theta_0 (other
    base scores) are not paired with the new ones (that would mix two theta_0) nor do they stop the aggregate."""
    from seppo.study.records import record_path

    p = parse_params({"video_study": {"rounds": 1, "seeds": [0, 1], "variants": VARIANTS, "out": "study",
                                      "compare_to": ["base", "sft"], "n_boot": 200}})
    runs = {r.name: r for r in plan_runs(p, "video_study")}
    rng = np.random.default_rng(2)
    new_base, old_base = rng.uniform(0.3, 0.6, 12), rng.uniform(0.2, 0.4, 12)
    for name, (variant, seed, base, shift, current) in {
            "video-none__seed0": ("none", 0, new_base, 0.04, True),
            "video-sft__seed0": ("sft", 0, new_base, -0.01, True),
            "video-none__seed1": ("none", 1, old_base, 0.30, False)}.items():
        rec = _record(variant, seed, base, base + shift) | {
            "params_hash": runs[name].params_hash if current else "an-older-recipe"}
        path = record_path(tmp_path / "study", runs[name])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    res = video.run_video_aggregate(p, tmp_path)
    assert res["records"] == 2 and res["stale"] == ["video-none__seed1"]
    table = pd.read_csv(tmp_path / "study" / "aggregate.csv")
    none = table[(table.variant == "none") & (table["round"] == 1) & (table.metric == "clip_utility")].iloc[0]
    assert none.diff_vs_base == pytest.approx(0.04)  # the stale seed's +0.30 is not in it
    assert str(none.seeds) == "0"
    assert "Left out: 1 recorded runs made with other params than today's plan" in \
        (tmp_path / "study" / "aggregate.md").read_text()
    note = video.stale_note(p, tmp_path)
    assert note[0].startswith("**1 of the 3 recorded runs were made with other params than today's**")
    assert "video-none__seed1" in note[0] and "left out of the tables" in note[0]
