from pathlib import Path

import pytest
import yaml

from seppo.config import ConfigError, Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_load_and_match_schema():
    params = load_params(ROOT / "params.yaml")
    assert params.world.image_size == 32
    # Every section in params.yaml is a known section (extra="forbid" would have raised).
    assert set(yaml.safe_load((ROOT / "params.yaml").read_text())) <= set(Params.model_fields)


def test_unknown_key_names_the_key_and_the_allowed_keys():
    with pytest.raises(ConfigError) as err:
        parse_params({"world": {"sead": 3}}, "p.yaml")
    msg = str(err.value)
    assert "p.yaml" in msg and "world.sead: unknown key" in msg
    assert "seed" in msg and "image_size" in msg


def test_unknown_section_is_rejected():
    with pytest.raises(ConfigError, match=r"trian: unknown key; did you mean train\? allowed keys here: base_model"):
        parse_params({"trian": {}})
    with pytest.raises(ConfigError) as err:  # nothing close: no guess
        parse_params({"zzz": {}})
    assert "did you mean" not in str(err.value)


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        parse_params({"base_samples": {"sampling": {"sampler": "plms"}}})
    msg = str(err.value)
    assert "base_samples.sampling.sampler" in msg
    for allowed in ("ddim", "ddpm", "euler", "dpmpp_2m"):
        assert allowed in msg
    assert "'plms'" in msg


def test_out_of_range_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError, match=r"world.tie_prob: Input should be less than or equal to 1"):
        parse_params({"world": {"tie_prob": 1.5}})
    with pytest.raises(ConfigError, match=r"base_model.unet_steps"):
        parse_params({"base_model": {"unet_steps": "many"}})


def test_cross_section_consistency():
    with pytest.raises(ConfigError, match="base_samples.prompts=100 exceeds world.eval_prompts=64"):
        parse_params({"base_samples": {"prompts": 100}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Params)


def test_unknown_scorer_fails_at_load_with_the_allowed_names():
    with pytest.raises(ConfigError) as err:
        parse_params({"evaluate": {"scorers": ["shapeland_utility", "pickscore"]}}, "p.yaml")
    msg = str(err.value)
    assert "evaluate.scorers.1" in msg and "'pickscore'" in msg
    for name in ("pickscore_x100", "hps_v21_x100", "imagereward", "aesthetic_laion"):
        assert name in msg
    with pytest.raises(ConfigError, match="lists a scorer twice"):
        parse_params({"evaluate": {"scorers": ["imagereward", "imagereward"]}})


def test_scorer_names_are_the_registry():
    from seppo.config import SCORER_NAMES
    from seppo.evaluation.scorers import REGISTRY
    from seppo.locations import WEIGHT_KEYS

    assert set(SCORER_NAMES) == set(REGISTRY)
    assert set(WEIGHT_KEYS) <= set(SCORER_NAMES)


def test_cross_section_rules_at_load():
    embedded_ps = {"scorers": ["pickscore_x100"], "models": {"pickscore_model": "models/pickscore",
                                                           "pickscore_processor": "models/pickscore"}}
    with pytest.raises(ConfigError, match=r"pickscore_model=models/pickscore is written by the scorer_model stage"):
        parse_params({"scorer_model": {"enabled": False}, "evaluate": embedded_ps})
    parse_params({"scorer_model": {"enabled": True}, "evaluate": embedded_ps})  # built by the pipeline: fine
    parse_params({"scorer_model": {"enabled": False}, "evaluate": {"scorers": ["pickscore_x100"]}})  # Hub ids
    with pytest.raises(ConfigError, match=r"ingest.source='/data/pap' is another preference set"):
        parse_params({"ingest": {"source": "/data/pap"}, "scorer_model": {"enabled": True}})
    parse_params({"ingest": {"source": "/data/pap"}, "scorer_model": {"enabled": False}})


@pytest.mark.parametrize("spelled", [{}, {"scorer_model": {"enabled": "auto"},
                                          "evaluate": {"models": {"pickscore_model": "auto",
                                                                  "pickscore_processor": "auto"}}}])
def test_auto_follows_the_ingest_source(spelled):
    """One setting points the project at real data: the embedded PickScore (stage and weights) follows it."""
    import copy

    embedded = parse_params(copy.deepcopy(spelled))
    assert embedded.scorer_model.enabled is True
    assert embedded.evaluate.models.pickscore_model == embedded.evaluate.models.pickscore_processor == "models/pickscore"
    real = parse_params({**copy.deepcopy(spelled), "ingest": {"source": "/data/pap"}})
    assert real.scorer_model.enabled is False
    assert real.evaluate.models.pickscore_model == "yuvalkirstain/PickScore_v1"
    assert real.evaluate.models.pickscore_processor == "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    # an explicit choice is kept: the embedded scorer's own weights may still score a mirror's images
    kept = parse_params({"ingest": {"source": "/data/pap"}, "evaluate": {"models": {"pickscore_model": "/w/ps"}}})
    assert kept.evaluate.models.pickscore_model == "/w/ps"


def test_a_cross_field_error_is_short_and_names_the_fields():
    with pytest.raises(ConfigError) as err:
        parse_params({**yaml.safe_load((ROOT / "params.yaml").read_text()),
                      "ingest": {"source": "/data/pap"}, "scorer_model": {"enabled": True}})
    text = str(err.value)
    assert len(text) < 600, text  # not the whole params dict (8,600 characters before)
    assert "scorer_model.enabled" in text and "ingest.source='/data/pap'" in text and "Value error" not in text
    with pytest.raises(ConfigError, match="min_side=64 exceeds max_side=32"):
        parse_params({"ingest": {"min_side": 64, "max_side": 32}})


def test_presets_pass_every_rule():
    for preset in sorted((ROOT / "configs").glob("*.yaml")):
        data = yaml.safe_load((ROOT / "params.yaml").read_text())
        for section, values in (yaml.safe_load(preset.read_text()) or {}).items():
            data.setdefault(section, {}).update(values)
        parse_params(data, str(preset))


# The study's design, not a knob: which runs it holds (variants), the variants every other is paired with
# (compare_to), the theta_0 / scorer recipe of its records (shared) and where this machine type's records go (out).
STUDY_DESIGN = {"study.variants", "study.compare_to", "study.shared", "study.out",
                "video_study.variants", "video_study.compare_to"}


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict) and prefix.rstrip(".") not in STUDY_DESIGN:
        for k in sorted(set(a) | set(b)):
            yield from _differences(a.get(k), b.get(k), f"{prefix}{k}.")
    elif a != b:
        yield prefix.rstrip(".")


def test_config_defaults_are_the_embedded_default():
    """One home for every default: Params() (config.py's defaults) is params.yaml's embedded default, key by key;
    the real-model settings live in presets (configs/*.yaml), the study's design in params.yaml's study section."""
    committed = load_params(ROOT / "params.yaml").model_dump()
    differ = set(_differences(Params().model_dump(), committed))
    assert differ == STUDY_DESIGN, sorted(differ ^ STUDY_DESIGN)


def test_the_defaults_check_sees_a_changed_default():
    committed = load_params(ROOT / "params.yaml").model_dump()
    changed = Params(train={"lr": 1e-5}, evaluate={"sampling": {"steps": 3}}).model_dump()
    assert set(_differences(changed, committed)) == STUDY_DESIGN | {"train.lr", "evaluate.sampling.steps"}
