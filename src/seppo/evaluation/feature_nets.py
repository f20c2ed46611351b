"""Embedded feature networks for FID and FVD: small networks trained on the video world's own renders.

FID and FVD need a feature network (Inception-v3 for frames, I3D / R3D-18 for clips) that nobody can
download here. Like the embedded PickScore, the video world trains its own: a frame network (2-D CNN) and a
clip network (3-D CNN), each a trunk ending in a `dim`-d feature layer, trained with classification heads
on freshly rendered Shapeland frames and clips whose labels are what was drawn:
- frame network: shape, colour, count, size, position, background, and the frame's defect (none / blur /
  noise / speckles);
- clip network: the change (one of the video world's changes, or none: a frozen clip), the first frame's
  shape, colour, count and background, and whether the clip flickers, shakes or carries frame defects.
The heads are dropped after training: what is saved is the trunk, as a `.safetensors` state dict whose
metadata names the architecture and its sizes (`seppo_feature_net`), which `video_metrics.FeatureNet` reads like
any other feature network's weights. Values computed with them are embedded-world metrics: comparable
between checkpoints of this project, never with published FID / FVD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# one metadata entry holding a JSON record: safetensors keeps metadata in a hash map, so several entries would be
# written in a different order on every run (and the file's bytes with them)
META_KEY = "seppo_feature_net"
KINDS = {"shapeland_frame": "fid", "shapeland_clip": "fvd"}
# the clip network's change classes: the world's changes, then "none" (the first frame held: nothing happens)
NO_CHANGE = "none"


def build_trunk(arch: str, width: int, dim: int):
    """The feature trunk: (B, 3, H, W) -> (B, dim) for frames, (B, 3, T, H, W) -> (B, dim) for clips."""
    from torch import nn

    if arch not in KINDS:
        raise ValueError(f"embedded feature network {arch!r}: one of {sorted(KINDS)}")
    conv, pool = (nn.Conv2d, nn.AdaptiveAvgPool2d) if arch == "shapeland_frame" else (nn.Conv3d, nn.AdaptiveAvgPool3d)
    # clips: the first block halves only space, the later ones time and space
    strides = [1, 2, 1, 2] if arch == "shapeland_frame" else [1, (1, 2, 2), 1, 2]
    chans = [3, width, 2 * width, 2 * width, 4 * width]
    layers: list = []
    for i, s in enumerate(strides):
        layers += [conv(chans[i], chans[i + 1], 3, stride=s, padding=1), nn.GroupNorm(8, chans[i + 1]), nn.SiLU()]
    return nn.Sequential(*layers, pool(1), nn.Flatten(), nn.Linear(chans[-1], dim))


def read_meta(path) -> dict | None:
    """The architecture record of an embedded feature network file, or None for any other weights."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if META_KEY not in meta:
        return None
    try:
        record = json.loads(meta[META_KEY])
        return {"arch": str(record["arch"]), "width": int(record["width"]), "dim": int(record["dim"]),
                "input_size": int(record["input_size"]), "frames": int(record.get("frames", 0))}
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: the {META_KEY} metadata of an embedded feature network is incomplete "
                         f"({type(err).__name__}: {err})") from None


# ---------------------------------------------------------------------------------------------- training data
@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]  # one classification head per name
    classes: tuple[int, ...]  # its number of classes


def frame_labels() -> Labels:
    from ..world.scene import BACKGROUNDS, COLOURS, COUNTS, POSITIONS, SHAPES, SIZES

    return Labels(("shape", "colour", "count", "size", "position", "background", "defect"),
                  (len(SHAPES), len(COLOURS), len(COUNTS), len(SIZES), len(POSITIONS), len(BACKGROUNDS), 4))


def clip_labels() -> Labels:
    from ..world.scene import BACKGROUNDS, COLOURS, COUNTS, SHAPES
    from ..world.video import CHANGES

    return Labels(("change", "shape", "colour", "count", "background", "flicker", "jitter", "frame_defect"),
                  (len(CHANGES) + 1, len(SHAPES), len(COLOURS), len(COUNTS), len(BACKGROUNDS), 2, 2, 2))


def _index(values, v) -> int:
    return list(values).index(v)


def render_frames(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n Shapeland images (n, H, W, 3) uint8 and their labels (n, 7): a quarter each clean, blurred, noisy,
    speckled."""
    from ..world.render import Defects, InfeasibleScene, render
    from ..world.scene import BACKGROUNDS, COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, random_scene

    images, labels = np.empty((n, size, size, 3), np.uint8), np.empty((n, 7), np.int64)
    i = 0
    while i < n:
        scene, kind = random_scene(rng), int(rng.integers(4))
        defects = [Defects(), Defects(blur_sigma=float(rng.uniform(0.7, 1.4))),
                   Defects(noise_std=float(rng.uniform(6.0, 20.0))), Defects(speckles=int(rng.integers(1, 4)))][kind]
        try:
            images[i] = render(scene, size, rng, defects)
        except InfeasibleScene:
            continue
        labels[i] = (_index(SHAPES, scene.shape), _index(COLOURS, scene.colour), _index(COUNTS, scene.count),
                     _index(SIZES, scene.size), _index(POSITIONS, scene.position), _index(BACKGROUNDS, scene.background),
                     kind)
        i += 1
    return images, labels


def render_clips(n: int, size: int, frames: int, rng: np.random.Generator, frozen: float = 0.1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """n clips (n, T, H, W, 3) uint8 and their labels (n, 8). Each defect (flicker, shake, frame defects) is
    drawn with probability 1/3, as the video world's generators draw them; a share ``frozen`` of the clips hold
    their first frame (the change did not happen)."""
    from ..world.render import Defects, InfeasibleScene
    from ..world.scene import BACKGROUNDS, COLOURS, COUNTS, SHAPES
    from ..world.video import CHANGES, ClipDefects, random_clip, render_clip

    clips, labels = np.empty((n, frames, size, size, 3), np.uint8), np.empty((n, 8), np.int64)
    i = 0
    while i < n:
        clip = random_clip(rng, size)
        u = rng.random(4)
        frame = Defects()
        if u[2] < 1 / 3:
            frame = [Defects(blur_sigma=float(rng.uniform(0.7, 1.4))), Defects(noise_std=float(rng.uniform(6.0, 20.0))),
                     Defects(speckles=int(rng.integers(1, 4)))][int(rng.integers(3))]
        defects = ClipDefects(frame=frame, flicker=float(rng.uniform(0.2, 0.4)) if u[0] < 1 / 3 else 0.0,
                              jitter_px=float(rng.uniform(1.5, 3.0)) if u[1] < 1 / 3 else 0.0)
        try:
            c = render_clip(clip, size, frames, rng, defects)
        except InfeasibleScene:
            continue
        held = u[3] < frozen
        clips[i] = np.repeat(c[:1], frames, 0) if held else c
        sc = clip.scene
        labels[i] = (len(CHANGES) if held else _index(CHANGES, clip.change), _index(SHAPES, sc.shape),
                     _index(COLOURS, sc.colour), _index(COUNTS, sc.count), _index(BACKGROUNDS, sc.background),
                     int(defects.flicker > 0 and not held), int(defects.jitter_px > 0 and not held),
                     int(frame != Defects()))
        i += 1
    return clips, labels


# ---------------------------------------------------------------------------------------------- training
def to_input(x: np.ndarray, arch: str, size: int):
    """uint8 frames (N, H, W, 3) or clips (N, T, H, W, 3) -> the trunk's input in [-1, 1], resized to ``size``."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x)).float().div(127.5).sub(1.0)
    if arch == "shapeland_frame":
        t = t.permute(0, 3, 1, 2)
        return t if t.shape[-1] == size else F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    n, f = t.shape[:2]
    t = t.reshape(n * f, *t.shape[2:]).permute(0, 3, 1, 2)
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.reshape(n, f, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


def train_network(arch: str, x: np.ndarray, y: np.ndarray, labels: Labels, *, width: int, dim: int, size: int,
                  steps: int, batch_size: int, lr: float, seed: int, held_out: float = 0.1,
                  progress_name: str | None = None) -> tuple[dict, dict]:
    """Train trunk + heads on (x, y); return (the trunk's state dict, held-out accuracy per head)."""
    import torch
    from torch import nn

    from ..progress import progress

    torch.manual_seed(seed)
    n_test = max(1, int(round(held_out * len(x))))
    xt, yt = to_input(x, arch, size), torch.from_numpy(y)
    train_x, train_y, test_x, test_y = xt[n_test:], yt[n_test:], xt[:n_test], yt[:n_test]
    trunk = build_trunk(arch, width, dim)
    heads = nn.ModuleList(nn.Linear(dim, k) for k in labels.classes)
    params = [*trunk.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed + 1)
    trunk.train()
    with progress(steps, progress_name or f"train {arch}", unit="step") as bar:
        for _ in range(steps):
            idx = torch.randint(len(train_x), (batch_size,), generator=gen)
            feats = trunk(train_x[idx])
            loss = sum(nn.functional.cross_entropy(h(feats), train_y[idx, j]) for j, h in enumerate(heads))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    trunk.eval()
    with torch.no_grad():
        feats = torch.cat([trunk(test_x[i:i + 256]) for i in range(0, n_test, 256)])
        acc = {name: float((h(feats).argmax(1) == test_y[:, j]).float().mean())
               for j, (name, h) in enumerate(zip(labels.names, heads, strict=True))}
    return {k: v.detach().clone().contiguous() for k, v in trunk.state_dict().items()}, acc


def save_trunk(state: dict, path, arch: str, width: int, dim: int, size: int, frames: int = 0) -> None:
    from safetensors.torch import save_file

    import json

    record = {"arch": arch, "width": width, "dim": dim, "input_size": size, "frames": frames}
    save_file(state, str(path), metadata={META_KEY: json.dumps(record, sort_keys=True)})


# ---------------------------------------------------------------------------------------------- the stage
def sanity_sets(n: int, size: int, frames: int, seed: int) -> dict[str, np.ndarray]:
    """Sets of n clips for the same n captions: two clean draws and clean draws with one thing broken."""
    from ..world.render import Defects, InfeasibleScene
    from ..world.video import CHANGES, ClipDefects, _compatible, random_clip, render_clip

    rng = np.random.default_rng([seed, 1000])
    broken = {"flicker": ClipDefects(flicker=0.3), "shake": ClipDefects(jitter_px=2.5),
              "frame_noise": ClipDefects(frame=Defects(noise_std=15.0))}
    sets: dict[str, list] = {k: [] for k in ("clean", "clean_redraw", "frozen", "other_change", *broken)}
    while len(sets["clean"]) < n:
        clip = random_clip(rng, size)
        others = [c for c in CHANGES if c != clip.change]
        try:
            other = _compatible(clip.scene, others[int(rng.integers(len(others)))])
            row = {"clean": render_clip(clip, size, frames, rng), "clean_redraw": render_clip(clip, size, frames, rng),
                   "other_change": render_clip(other, size, frames, rng),
                   **{k: render_clip(clip, size, frames, rng, d) for k, d in broken.items()}}
        except (InfeasibleScene, ValueError):  # the other change may not fit this scene: draw another caption
            continue
        row["frozen"] = np.repeat(row["clean"][:1], frames, 0)
        for k, v in row.items():
            sets[k].append(v)
    return {k: np.stack(v) for k, v in sets.items()}


def run_video_features(cfg, image_size: int, frames: int, out_dir, metrics_path) -> dict:
    """Train both networks, save their trunks in ``out_dir`` (frame.safetensors, clip.safetensors), and measure
    what FID / FVD say of broken sets against clean clips (the sanity table of the metrics)."""
    import time
    from pathlib import Path

    from ..io_utils import atomic_dir, write_json
    from ..layout import timing_path
    from .video_metrics import FeatureNet, frechet_distance

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    rng = np.random.default_rng([cfg.seed, 0])
    x, y = render_frames(cfg.frame_images, image_size, rng)
    frame_state, frame_acc = train_network("shapeland_frame", x, y, frame_labels(), width=cfg.width, dim=cfg.dim,
                                           size=image_size, steps=cfg.frame_steps, batch_size=cfg.batch_size,
                                           lr=cfg.lr, seed=cfg.seed, progress_name="video-features frames")
    rng = np.random.default_rng([cfg.seed, 1])
    x, y = render_clips(cfg.clips, image_size, frames, rng, frozen=cfg.frozen_share)
    clip_state, clip_acc = train_network("shapeland_clip", x, y, clip_labels(), width=cfg.width, dim=cfg.dim,
                                         size=image_size, steps=cfg.clip_steps, batch_size=cfg.batch_size,
                                         lr=cfg.lr, seed=cfg.seed, progress_name="video-features clips")
    del x, y
    sets = sanity_sets(cfg.sanity_clips, image_size, frames, cfg.seed)
    with atomic_dir(out_dir) as tmp:
        save_trunk(frame_state, tmp / "frame.safetensors", "shapeland_frame", cfg.width, cfg.dim, image_size)
        save_trunk(clip_state, tmp / "clip.safetensors", "shapeland_clip", cfg.width, cfg.dim, image_size, frames)
        nets = {"fid": FeatureNet("fid", "shapeland_frame", tmp / "frame.safetensors"),
                "fvd": FeatureNet("fvd", "shapeland_clip", tmp / "clip.safetensors")}
        feats = {k: {name: net.features(s) for name, s in sets.items()} for k, net in nets.items()}
        sanity = {name: {k: round(frechet_distance(feats[k][name], feats[k]["clean"]), 4) for k in nets}
                  for name in ["clean", *[s for s in sets if s != "clean"]]}
        result = {"image_size": image_size, "frames": frames, "width": cfg.width, "dim": cfg.dim,
                  "frame_network": {"held_out_accuracy": {k: round(v, 4) for k, v in frame_acc.items()},
                                    "images": cfg.frame_images, "steps": cfg.frame_steps},
                  "clip_network": {"held_out_accuracy": {k: round(v, 4) for k, v in clip_acc.items()},
                                   "clips": cfg.clips, "steps": cfg.clip_steps},
                  "sanity": {"reference": f"{cfg.sanity_clips} clean clips", "vs_reference": sanity}}
        write_json(tmp / "sanity.json", {k: result[k] for k in ("sanity", "frame_network", "clip_network")})
    write_json(metrics_path, result)
    write_json(timing_path(metrics_path), {"seconds": round(time.perf_counter() - t0, 1)})
    return result
