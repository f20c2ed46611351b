"""Validation (Great Expectations checkpoint, thresholds) and the latent / text-embedding cache."""

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from seppo.config import CacheConfig, IngestConfig
from seppo.data.cache import LatentCache, load_encoders, preprocess, run_cache
from seppo.data.expectations import DataQualityError, run_validate
from seppo.data.ingest import run_ingest
from tests.headless import dump_dom, needs_chromium
from tests.test_data_ingest import BAD, GOOD, img_bytes, row, write_shard


def float_tiff() -> bytes:
    """A decodable image in a mode the defaults do not accept (32-bit float pixels)."""
    buf = io.BytesIO()
    Image.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32), "F").save(buf, "TIFF")
    return buf.getvalue()


@pytest.fixture()
def ingested(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = [GOOD] + [row(100 + i, caption=f"a blue square {i}") for i in range(9)]
    rows += [BAD["zero_byte"][0], row(5, jpg_0=float_tiff()), BAD["long_caption"][0]]
    write_shard(src / "s.parquet", rows)
    out = tmp_path / "ingest"
    run_ingest(IngestConfig(source=str(src)), out, tmp_path / "m.json")
    return out


def test_checkpoint_passes_on_kept_rows_and_counts_the_quarantined(ingested, tmp_path):
    cfg = IngestConfig(max_quarantine_share=0.5)
    summary = run_validate(cfg, ingested, tmp_path / "docs", tmp_path / "r.json", tmp_path / "v.json")
    assert summary["kept_rows_pass"] and summary["expectations"] == 13
    results = json.loads((tmp_path / "r.json").read_text())
    unexpected = {(e["expectation"], e["column"]): e["unexpected_count"]
                  for e in results["all_rows"]["expectations"]}
    # the same rules as the ingest checks, stated in GX: one bad row each
    assert unexpected[("expect_column_values_to_be_in_set", "decodable")] == 1  # zero-byte
    assert unexpected[("expect_column_values_to_be_in_set", "image_mode")] == 1  # float pixels
    assert unexpected[("expect_column_values_to_be_between", "caption_chars")] == 1  # too long
    assert (tmp_path / "docs" / "index.html").exists()
    # Data Docs load nothing from a CDN: every script and stylesheet is a local copy
    pages = list((tmp_path / "docs").rglob("*.html"))
    assert len(pages) >= 3 and not any(re.search(r"<(script|link)\b[^>]*(src|href)=\"https?://", p.read_text())
                                       for p in pages)
    assert (tmp_path / "docs/_vendor/jquery@3.7.1/dist/jquery.min.js").exists()
    # nor an image: GX's navbar logo and its CSS background point at the site's own copy
    assert not any(re.search(r"""(<img\b[^>]*src=["']|url\(["']?)https?://""", p.read_text()) for p in pages)
    # the two checkpoint runs are labelled in the index (not two "__none__" runs)
    index = (tmp_path / "docs/index.html").read_text()
    assert "kept-rows-must-pass" in index and "all-labelled-rows" in index and "__none__" not in index


def test_data_docs_are_the_same_bytes_for_the_same_profile(ingested, tmp_path):
    """No clock and no random id in the pages: validate re-run after a kill writes the same output."""
    cfg = IngestConfig(max_quarantine_share=0.5)
    for run in ("a", "b"):
        run_validate(cfg, ingested, tmp_path / run, tmp_path / f"{run}.json", tmp_path / f"{run}_m.json")
    pages = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*.html")}
    assert len(pages) >= 3
    assert pages == {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*.html")}


@needs_chromium
def test_data_docs_render_offline(ingested, tmp_path):
    run_validate(IngestConfig(max_quarantine_share=0.5), ingested, tmp_path / "docs", tmp_path / "r.json",
                 tmp_path / "v.json")
    dom = dump_dom(tmp_path / "docs/index.html")
    # bootstrap-table (jquery + bootstrap) built the validation-results table: one row per checkpoint run
    assert 'class="bootstrap-table bootstrap4"' in dom
    assert dom.count('data-href="validations/winners_profile/') == 2


def test_stage_fails_above_the_quarantine_threshold(ingested, tmp_path):
    cfg = IngestConfig(max_quarantine_share=0.1)  # 3 of 13 rows quarantined
    with pytest.raises(DataQualityError, match=r"3 of 13 rows quarantined .*max_quarantine_share=0.1"):
        run_validate(cfg, ingested, tmp_path / "docs", tmp_path / "r.json", tmp_path / "v.json")


def test_suite_catches_a_kept_row_that_should_not_be_there(ingested, tmp_path):
    prof = pd.read_parquet(ingested / "profile.parquet")
    prof.loc[prof.index[0], "width"] = 1  # simulate an ingest bug letting a bad row through
    prof.to_parquet(ingested / "profile.parquet", index=False)
    with pytest.raises(DataQualityError, match=r"kept winners fail expectations .*width"):
        run_validate(IngestConfig(max_quarantine_share=0.5), ingested, tmp_path / "d", tmp_path / "r",
                     tmp_path / "v")


def test_preprocess_resizes_crops_and_flips_reproducibly():
    data = img_bytes(size=(48, 32), seed=3)
    center, info = preprocess(data, 16, CacheConfig(), "k")
    assert center.shape == (3, 16, 16) and info == {"crop_x": 4, "crop_y": 0, "flipped": False}
    assert -1.0 <= center.min() and center.max() <= 1.0
    flips = [preprocess(data, 16, CacheConfig(flip="random"), f"k{i}")[1]["flipped"] for i in range(40)]
    assert 5 < sum(flips) < 35  # about half, seeded per row
    a, ia = preprocess(data, 16, CacheConfig(flip="random", crop="random"), "same")
    b, ib = preprocess(data, 16, CacheConfig(flip="random", crop="random"), "same")
    assert ia == ib and np.array_equal(a, b)
    if ia["flipped"]:
        plain, _ = preprocess(data, 16, CacheConfig(crop="random"), "same")
        assert np.array_equal(a, plain[:, :, ::-1])


def test_cache_equals_direct_encoding(ingested, tiny_pipeline_dir, tmp_path):
    out = tmp_path / "cache"
    summary = run_cache(CacheConfig(shard_rows=4, batch_size=3), ingested, tiny_pipeline_dir, out,
                        tmp_path / "c.json")
    assert summary["winners_cached"] == 10 and summary["losers_cached"] == 10
    cache = LatentCache(out)
    winners = pd.read_parquet(ingested / "winners.parquet")
    vae, tok, te = load_encoders(tiny_pipeline_dir)
    rows = [0, 5, 9]  # across shards of 4
    x = torch.from_numpy(np.stack([preprocess(winners.image[i], 32, CacheConfig(), winners.winner_uid[i])[0]
                                   for i in rows]))
    with torch.no_grad():
        direct = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    torch.testing.assert_close(cache.latents(rows), direct, rtol=1e-5, atol=1e-5)
    ids = tok([winners.caption[i] for i in rows], padding="max_length", max_length=tok.model_max_length,
              truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(cache.embeddings(rows), te(ids)[0], rtol=1e-5, atol=1e-5)
    assert cache.index.winner_uid.tolist() == winners.winner_uid.tolist()
    losers = LatentCache(out, "losers")
    assert losers.index.winner_uid.tolist() == winners.winner_uid.tolist()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["policy"]["resolution"] == 32 and manifest["latent_shape"] == [4, 8, 8]


def test_sampled_latents_are_seeded_per_row(ingested, tiny_pipeline_dir, tmp_path):
    cfg = CacheConfig(latent="sample", include_losers=False)
    run_cache(cfg, ingested, tiny_pipeline_dir, tmp_path / "a", tmp_path / "a.json")
    run_cache(cfg.model_copy(update={"batch_size": 4}), ingested, tiny_pipeline_dir, tmp_path / "b",
              tmp_path / "b.json")
    a, b = LatentCache(tmp_path / "a").all_latents(), LatentCache(tmp_path / "b").all_latents()
    torch.testing.assert_close(a, b)
    mean = run_cache(CacheConfig(include_losers=False), ingested, tiny_pipeline_dir, tmp_path / "m", tmp_path / "m.json")
    assert mean and not torch.allclose(a, LatentCache(tmp_path / "m").all_latents())
