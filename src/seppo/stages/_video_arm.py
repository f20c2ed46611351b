"""What a video arm's round stages share: the arm's training settings (train.* + video.train_overrides, the arm's
loss)."""

from __future__ import annotations

from ..config import VIDEO_ARMS, Params, TrainConfig, video_train_config


class UnknownArm(ValueError):
    """--arm names no arm of video.arms' choices."""


def arm_config(params: Params, arm: str) -> TrainConfig:
    if arm not in VIDEO_ARMS:
        raise UnknownArm(f"--arm {arm!r}: one of {', '.join(VIDEO_ARMS)}")
    return video_train_config(params).model_copy(update={"loss": arm})
