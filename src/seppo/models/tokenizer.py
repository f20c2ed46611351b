"""The exact CLIP BPE tokenizer, built offline from the vocabulary open_clip ships.

Stable Diffusion's tokenizer is OpenAI CLIP's byte-level BPE (49,408 tokens). open_clip packages its
merges file, so vocab.json and merges.txt can be rebuilt without any download; the result tokenizes
exactly like ``openai/clip-vit-large-patch14``'s tokenizer.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

N_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _bpe_file() -> Path:
    path = resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"open_clip's BPE vocabulary is missing: {path}")
    return Path(str(path))


def write_clip_vocab(out_dir: str | Path) -> tuple[Path, Path]:
    """Write vocab.json and merges.txt (the files CLIPTokenizer reads) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_bpe_file()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : N_MERGES + 1]]
    vocab = list(byte_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges] + [BOS, EOS]
    if len(vocab) != VOCAB_SIZE:
        raise RuntimeError(f"rebuilt CLIP vocabulary has {len(vocab)} tokens, expected {VOCAB_SIZE}")
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_path.write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    merges_path.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vocab_path, merges_path


def build_clip_tokenizer(work_dir: str | Path, model_max_length: int = 77):
    """A ``CLIPTokenizer`` with SD's vocabulary; files are written into ``work_dir``."""
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_vocab(work_dir)
    # Paths are passed positionally: transformers 5 ignores them as keywords (empty tokenizer).
    tok = CLIPTokenizer(
        str(vocab_path), str(merges_path), model_max_length=model_max_length, pad_token=EOS
    )
    if len(tok) != VOCAB_SIZE:
        raise RuntimeError(f"CLIPTokenizer loaded {len(tok)} tokens from {vocab_path}")
    return tok
