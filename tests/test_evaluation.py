"""Evaluation: statistics by hand, scorers with tiny random weights in their real on-disk formats,
prompt sets, and the generate -> evaluate stages on a tiny pipeline."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from seppo.config import EvaluateConfig
from seppo.evaluation.scorers import MissingWeights, build_scorers
from seppo.evaluation.scorers.clip_family import CosineScorer
from seppo.evaluation.stats import bootstrap_mean, paired_win_rate

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
PROMPTS = ["a red circle", "two blue squares", "a green triangle", "three small circles", "a cat"]


def test_bootstrap_interval_and_paired_win_rate_by_hand():
    m, lo, hi = bootstrap_mean(np.full((10, 2), 0.5), 200, 0)
    assert (m, lo, hi) == (0.5, 0.5, 0.5)
    m, lo, hi = bootstrap_mean(np.arange(20.0).reshape(10, 2), 500, 0)
    assert m == pytest.approx(9.5) and lo < 9.5 < hi
    a = np.array([[1.0, 2.0], [3.0, 3.0]])
    b = np.array([[0.0, 2.0], [4.0, 1.0]])
    w, _, _ = paired_win_rate(a, b, 200, 0)
    assert w == pytest.approx((1 + 0.5 + 0 + 1) / 4)  # win, tie, loss, win
    with pytest.raises(ValueError, match="same prompts and seeds"):
        paired_win_rate(a, b[:1], 100, 0)


class FakeBackbone:
    def __init__(self, img, txt):
        self.img, self.txt = img, txt

    def image_embeds(self, images):
        return self.img

    def text_embeds(self, prompts):
        return self.txt


def test_cosine_scorer_known_answer():
    img = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
    s = CosineScorer("pickscore_x100", FakeBackbone(img, txt), clamp_zero=False).score([0] * 3, ["p"] * 3)
    assert s.tolist() == pytest.approx([100.0, 60.0, -100.0])
    c = CosineScorer("clip_l14_x100", FakeBackbone(img, txt), clamp_zero=True).score([0] * 3, ["p"] * 3)
    assert c.tolist() == pytest.approx([100.0, 60.0, 0.0])  # CLIPScore clamps at 0


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny random CLIPModel + CLIPProcessor saved with save_pretrained (PickScore's format)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from seppo.models.tokenizer import build_clip_tokenizer

    d = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16)
    CLIPModel(cfg).save_pretrained(d)
    tok = build_clip_tokenizer(str(d / "tok"), model_max_length=77)
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                           crop_size={"height": 32, "width": 32}),
                         tokenizer=tok)
    proc.save_pretrained(d)
    head = d / "aesthetic.pth"
    from seppo.evaluation.scorers.clip_family import aesthetic_mlp

    torch.save(aesthetic_mlp(16).state_dict(), head)
    return d, head


def test_pickscore_and_aesthetic_through_the_real_code_path(tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    d, head = tiny_clip
    models = {"pickscore_model": str(d), "pickscore_processor": str(d), "clip_model": str(d),
              "aesthetic_head": str(head)}
    pick, clip, aes = build_scorers(["pickscore_x100", "clip_l14_x100", "aesthetic_laion"], models)
    s = pick.score(IMAGES, PROMPTS)
    model, proc = CLIPModel.from_pretrained(d), CLIPProcessor.from_pretrained(d)
    with torch.no_grad():
        fi = model.get_image_features(**proc(images=IMAGES, return_tensors="pt"))
        ft = model.get_text_features(**proc(text=PROMPTS, padding="max_length", return_tensors="pt"))
        fi = fi if torch.is_tensor(fi) else fi.pooler_output
        ft = ft if torch.is_tensor(ft) else ft.pooler_output
        fi, ft = fi / fi.norm(dim=-1, keepdim=True), ft / ft.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(s, 100 * (fi * ft).sum(-1).numpy(), rtol=1e-4, atol=1e-4)
    assert clip.backbone is aes.backbone  # one CLIP-L load shared by two scorers
    a = aes.score(IMAGES, PROMPTS)
    with torch.no_grad():
        np.testing.assert_allclose(a, aes.head(fi).squeeze(-1).numpy(), rtol=1e-4, atol=1e-5)
    assert pick.score(IMAGES[::-1], PROMPTS[::-1]).tolist() == pytest.approx(s[::-1].tolist(), rel=1e-5)


def test_hpsv2_with_a_tiny_open_clip_checkpoint(tmp_path):
    import open_clip

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (tmp_path / "seppo-tiny-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "seppo-tiny-vit.json")
    model = open_clip.create_model("seppo-tiny-vit", pretrained=None)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "HPS_v2.1_compressed.pt")
    (hps,) = build_scorers(["hps_v21_x100"], {"hps_v21_checkpoint": str(tmp_path / "HPS_v2.1_compressed.pt"),
                                              "hps_architecture": "seppo-tiny-vit"})
    s = hps.score(IMAGES, PROMPTS)
    assert hps.name == "hps_v21_x100" and s.shape == (5,) and np.all(np.abs(s) <= 100)
    from PIL import Image

    _, _, pre = open_clip.create_model_and_transforms("seppo-tiny-vit", pretrained=None)
    model.eval()
    with torch.no_grad():
        fi = model.encode_image(torch.stack([pre(Image.fromarray(x)) for x in IMAGES]), normalize=True)
        ft = model.encode_text(open_clip.get_tokenizer("seppo-tiny-vit")(PROMPTS), normalize=True)
    np.testing.assert_allclose(s, 100 * (fi * ft).sum(-1).numpy(), rtol=1e-4, atol=1e-4)


def test_missing_weights_name_the_param(tmp_path):
    with pytest.raises(MissingWeights, match="evaluate.models.hps_v21_checkpoint=.*does not exist"):
        build_scorers(["hps_v21_x100"], {"hps_v21_checkpoint": str(tmp_path / "nope.pt")})
    with pytest.raises(MissingWeights, match="evaluate.models.pickscore_model=.*local Hugging Face cache"):
        build_scorers(["pickscore_x100"], {"pickscore_model": "yuvalkirstain/PickScore_v1",
                                           "pickscore_processor": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"})
    with pytest.raises(ValueError, match="unknown scorers"):
        build_scorers(["pickscore"], {})


def test_prompt_files(tmp_path):
    from seppo.evaluation.prompts import PromptSetError, load_prompts

    (tmp_path / "p.txt").write_text("a cat\n\na dog\na cat\n")
    t = load_prompts(EvaluateConfig(prompts=str(tmp_path / "p.txt")))
    assert t.prompt.tolist() == ["a cat", "a dog"] and t.prompt_id.tolist() == ["p00000", "p00001"]
    pd.DataFrame({"Prompt": ["x", "y", "z"]}).to_csv(tmp_path / "parti.tsv", sep="\t", index=False)
    t = load_prompts(EvaluateConfig(prompts=str(tmp_path / "parti.tsv"), prompt_column="Prompt", max_prompts=2))
    assert t.prompt.tolist() == ["x", "y"]
    (tmp_path / "hps.json").write_text(json.dumps(["an anime girl", "a photo"]))
    assert load_prompts(EvaluateConfig(prompts=str(tmp_path / "hps.json"))).prompt.tolist() == ["an anime girl", "a photo"]
    with pytest.raises(PromptSetError, match="no column 'caption'"):
        load_prompts(EvaluateConfig(prompts=str(tmp_path / "parti.tsv")))


def test_generate_once_then_score_every_checkpoint(tiny_pipeline_dir, tiny_clip, tmp_path, capfd):
    from seppo.evaluation.generate import run_eval_generate
    from seppo.evaluation.stage import run_evaluate

    d, _ = tiny_clip
    world = ["one large red circle on the left on a white background",
             "two small blue squares at the top on a black background",
             "three small green triangles on a grey background"]
    (tmp_path / "prompts.txt").write_text("\n".join(world))
    cfg = EvaluateConfig(prompts=str(tmp_path / "prompts.txt"), seeds=[0, 1], n_boot=200, grid_prompts=2,
                         sampling={"sampler": "ddim", "steps": 2, "guidance": 3.0},
                         scorers=["shapeland_utility", "pickscore_x100"],
                         models={"pickscore_model": str(d), "pickscore_processor": str(d)})
    a = run_eval_generate(cfg, tiny_pipeline_dir, "base", tmp_path / "eval/base")
    run_eval_generate(cfg, tiny_pipeline_dir, "round_1", tmp_path / "eval/round_1")
    assert a["images"] == 6 and a["steps"] == 2
    res = run_evaluate(cfg, [tmp_path / "eval/base", tmp_path / "eval/round_1"], tmp_path / "out",
                       tmp_path / "eval.json", tmp_path / "plots.csv")
    err = capfd.readouterr().err  # progress bars with counts (ETA comes with them) on stderr
    assert "eval-generate base: 100%" in err and "6/6" in err
    assert "evaluate: 100%" in err and "24/24" in err  # 2 checkpoints x 6 images x 2 scorers
    scores = pd.read_parquet(tmp_path / "out/scores.parquet")
    assert list(scores.columns) == ["checkpoint", "round", "prompt_id", "seed", "metric", "value"]
    assert len(scores) == 2 * 6 * 2
    # the same weights and seeds give the same images: round_1 ties base everywhere -> win rate 0.5
    assert res["metrics"]["round_1"]["pickscore_x100"]["win_rate_vs_base"] == 0.5
    assert res["metrics"]["base"]["shapeland_utility"]["mean"] == res["metrics"]["round_1"]["shapeland_utility"]["mean"]
    assert res["settings"]["steps"] == 2 and res["settings"]["seeds"] == [0, 1]
    plots = pd.read_csv(tmp_path / "plots.csv")  # one series per scorer, never one mixed "mean" column
    assert list(plots.columns) == ["round", "checkpoint"] + [
        f"{m}{suffix}" for m in ("pickscore_x100", "shapeland_utility") for suffix in ("", "_ci_low", "_ci_high")]
    assert list(plots.checkpoint) == ["base", "round_1"] and (tmp_path / "out/grid.png").exists()
    assert plots.shapeland_utility[1] == pytest.approx(res["metrics"]["round_1"]["shapeland_utility"]["mean"])


@pytest.mark.slow
def test_imagereward_checkpoint_through_the_real_blip_code(tmp_path):
    from seppo.evaluation.scorers.imagereward import IR_MEAN, IR_STD, build_model

    words = sorted({w for p in PROMPTS for w in p.split()})
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.0, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 37,
           "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 2,
           "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(words) + 7,
           "encoder_width": 768, "add_cross_attention": True}
    (tmp_path / "med_config.json").write_text(json.dumps(med))
    torch.manual_seed(0)
    model = build_model(tmp_path / "med_config.json", vit="base")
    for p in model.mlp.parameters():  # released init gives ~0 everywhere; make scores differ
        torch.nn.init.normal_(p, std=0.2)
    torch.save(model.state_dict(), tmp_path / "ImageReward.pt")
    (ir,) = build_scorers(["imagereward"], {"imagereward_checkpoint": str(tmp_path / "ImageReward.pt"),
                                            "imagereward_med_config": str(tmp_path / "med_config.json"),
                                            "imagereward_tokenizer": str(tmp_path / "tok"),
                                            "imagereward_vit": "base"}, batch_size=2)
    s = ir.score(IMAGES, PROMPTS)
    assert ir.name == "imagereward" and s.shape == (5,) and np.isfinite(s).all() and s.std() > 0
    # one image through the package's own single-image path gives the same number
    from PIL import Image

    x = ir.preprocess(Image.fromarray(IMAGES[1])).unsqueeze(0)
    t = ir.tok([PROMPTS[1]], padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    with torch.no_grad():
        emb = ir.model.blip.visual_encoder(x)
        h = ir.model.blip.text_encoder(t.input_ids, attention_mask=t.attention_mask, encoder_hidden_states=emb,
                                       encoder_attention_mask=torch.ones(emb.shape[:-1], dtype=torch.long),
                                       return_dict=True).last_hidden_state[:, 0, :]
        one = ((ir.model.mlp(h) - IR_MEAN) / IR_STD).item()
    assert s[1] == pytest.approx(one, rel=1e-4, abs=1e-5)

    # a checkpoint of another input side: a clear error naming the params, not a shape dump
    small = build_model(tmp_path / "med_config.json", vit="base", image_size=64)
    torch.save(small.state_dict(), tmp_path / "ImageReward64.pt")
    models = {"imagereward_checkpoint": str(tmp_path / "ImageReward64.pt"),
              "imagereward_med_config": str(tmp_path / "med_config.json"),
              "imagereward_tokenizer": str(tmp_path / "tok"), "imagereward_vit": "base"}
    with pytest.raises(MissingWeights, match="imagereward_image_size"):
        build_scorers(["imagereward"], models)
    (ir64,) = build_scorers(["imagereward"], {**models, "imagereward_image_size": 64}, batch_size=2)
    assert ir64.preprocess(Image.fromarray(IMAGES[0])).shape == (3, 64, 64)
    assert np.isfinite(ir64.score(IMAGES, PROMPTS)).all()
