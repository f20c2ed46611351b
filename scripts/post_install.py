"""Post-install fix-ups for the scorer packages installed with --no-deps (see docs/install.md).

hpsv2 1.2.0's wheel lacks the BPE vocabulary its bundled open_clip reads at import time; the file
is byte-identical to the one open-clip-torch ships, so it is copied from there.
"""

import importlib.util
import shutil
import sys
from pathlib import Path


def main() -> int:
    clip_spec = importlib.util.find_spec("open_clip")
    hps_spec = importlib.util.find_spec("hpsv2")
    if clip_spec is None or hps_spec is None:
        print("post_install: open_clip or hpsv2 is not installed", file=sys.stderr)
        return 1
    src = Path(clip_spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    dst = Path(hps_spec.origin).parent / "src" / "open_clip" / src.name
    if not dst.exists():
        shutil.copyfile(src, dst)
        print(f"post_install: copied {src.name} into {dst.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
