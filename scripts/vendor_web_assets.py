"""Refresh src/seppo/webassets/vendor/ from the npm registry (`npm pack`, no install).

Copies the files listed in seppo.webassets.offline.ASSETS (and their licences) out of each package's
tarball and writes vendor/MANIFEST.json with every file's sha256. Run it after changing ASSETS:
    python scripts/vendor_web_assets.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from seppo.webassets.offline import ASSETS, VENDOR  # noqa: E402

LICENCES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "license", "LICENCE")


def main() -> None:
    wanted: dict[tuple[str, str], set[str]] = {}
    for a in ASSETS:
        wanted.setdefault((a.package, a.version), set()).update((a.file, *a.extra))
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    manifest = {}
    with tempfile.TemporaryDirectory() as tmp:
        for (pkg, ver), files in sorted(wanted.items()):
            name = subprocess.run(["npm", "pack", "--silent", f"{pkg}@{ver}"], cwd=tmp, check=True,
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1]
            folder = f"{pkg.replace('/', '__')}@{ver}"
            with tarfile.open(Path(tmp) / name) as tar:
                members = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
                # the licence file; a package without one states its licence in package.json
                lic = ([n for n in LICENCES if n in members] or ["package.json"])[:1]
                for rel in sorted(files) + lic:
                    if rel not in members:
                        raise SystemExit(f"{pkg}@{ver}: {rel} not in the package")
                    data = tar.extractfile(members[rel]).read()
                    dst = VENDOR / folder / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
                    manifest[f"{folder}/{rel}"] = hashlib.sha256(data).hexdigest()
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{len(manifest)} files in {VENDOR}")


if __name__ == "__main__":
    main()
