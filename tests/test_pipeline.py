"""Tokenizer, loading a saved pipeline from disk, and seeded sampling."""

import numpy as np
import pytest

from seppo.config import SamplingConfig
from seppo.models.pipeline import ModelNotFound, generate, load_pipeline, prompt_seed
from seppo.models.tokenizer import build_clip_tokenizer

FAST = SamplingConfig(sampler="ddim", steps=2, guidance=3.0)


def test_offline_tokenizer_equals_open_clip(tmp_path):
    import open_clip

    tok = build_clip_tokenizer(tmp_path)
    assert len(tok) == 49408  # an empty v5 tokenizer would have 2 tokens
    ref = open_clip.tokenizer.SimpleTokenizer()
    for text in ["two large red circles on the left on a black background", "Café, 3 dogs! (sketch)"]:
        assert tok(text).input_ids[1:-1] == ref.encode(text)


def test_saved_pipeline_loads_and_samples(tiny_pipeline_dir):
    from diffusers import StableDiffusionPipeline

    pipe = load_pipeline(tiny_pipeline_dir)
    assert isinstance(pipe, StableDiffusionPipeline)
    imgs = generate(pipe, ["one small red circle on a white background"] * 2, [0, 1], FAST)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    assert not np.array_equal(imgs[0], imgs[1])


def test_samples_do_not_depend_on_batching(tiny_pipeline_dir):
    pipe = load_pipeline(tiny_pipeline_dir)
    a, b = "one small red circle on a white background", "two large blue squares on a grey background"
    together = generate(pipe, [a, b], [0, 0], FAST)
    alone = generate(pipe, [b], [0], FAST)
    again = generate(pipe, [b, a], [0, 0], FAST, batch_size=1)
    np.testing.assert_array_equal(together[1], alone[0])
    np.testing.assert_array_equal(together[0], again[1])


def test_prompt_seed_is_stable_and_distinct():
    assert prompt_seed("a", 0) == prompt_seed("a", 0)
    assert len({prompt_seed("a", 0), prompt_seed("a", 1), prompt_seed("b", 0)}) == 3


@pytest.mark.parametrize("sampler", ["ddpm", "euler", "dpmpp_2m"])
def test_named_samplers_run(tiny_pipeline_dir, sampler):
    pipe = load_pipeline(tiny_pipeline_dir)
    imgs = generate(pipe, ["one small red circle on a white background"], [0], SamplingConfig(sampler=sampler, steps=2))
    assert imgs.shape == (1, 32, 32, 3)
    assert type(pipe.scheduler).__name__.lower().startswith(sampler.split("_")[0][:3])


def test_missing_model_names_what_was_looked_for(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist.*base_model.source"):
        load_pipeline(tmp_path / "nowhere")
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE is set.*base_model.source"):
        load_pipeline("someone/not-cached-model")
