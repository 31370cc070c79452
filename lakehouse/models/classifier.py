"""The content/style classifier: a small CNN with two heads, trained here on our own data.

No pretrained weights: the network is trained from scratch on the labelled
photos' augmented tensors. Training is seeded and uses deterministic
algorithms, so the same inputs give the same weights hash on the CPU.
"""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from lakehouse.failpoints import failpoint
from lakehouse.progress import Progress
from lakehouse.vocabulary import CONTENT_CLASSES, STYLES

MEAN, STD = 0.5, 0.25
MAX_SHIFT = 6
UNKNOWN = -100  # a target the loss ignores: the style of a photo with only a weak content label


class PhotoNet(nn.Module):
    """Downsampling, four conv blocks, global pooling, a content head and a style head."""

    def __init__(self, contents: int = len(CONTENT_CLASSES), styles: int = len(STYLES)) -> None:
        super().__init__()

        def block(inputs: int, outputs: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(
            nn.AvgPool2d(2),  # INPUT_SIZE 96 -> 48: shapes and styles survive, compute drops 4x
            block(3, 16),
            block(16, 32),
            block(32, 64),
            block(64, 96),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
        )
        self.content = nn.Linear(96, contents)
        self.style = nn.Linear(96, styles)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.features(pixels)
        return self.content(embedding), self.style(embedding)


class PackedPixels:
    """uint8 images of one shape, each held zstd-compressed and unpacked only when indexed.

    The same pixels as one N×C×H×W tensor in about a sixth of the memory (augmented
    views compress ~5.9x): training holds up to max_steps x batch_size views for the
    whole step, 1 GiB unpacked at 38,400 views, while unpacking a batch of 32 costs
    about a millisecond. Indexing (a tensor of indices or a slice) returns a new
    uint8 tensor, as indexing a tensor does.
    """

    CODEC = "zstd"

    def __init__(self, count: int, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self._size = int(np.prod(self.shape))
        self._packed: list[bytes | None] = [None] * count

    def __len__(self) -> int:
        return len(self._packed)

    @property
    def missing(self) -> int:
        """Positions never filled."""
        return sum(packed is None for packed in self._packed)

    def put(self, positions: list[int], pixels: torch.Tensor) -> None:
        """Store image i of `pixels` (uint8, this shape) at `positions[i]`."""
        if tuple(pixels.shape[1:]) != self.shape or pixels.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images of shape {self.shape}, not {pixels.shape}")
        for position, image in zip(positions, pixels.numpy(), strict=True):
            self._packed[position] = pa.compress(image, codec=self.CODEC, asbytes=True)

    def _unpacked(self, position: int) -> np.ndarray:
        packed = self._packed[position]
        if packed is None:
            raise IndexError(f"image {position} was never stored")
        raw = pa.decompress(packed, decompressed_size=self._size, codec=self.CODEC, asbytes=True)
        return np.frombuffer(raw, dtype=np.uint8)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        positions = (
            range(len(self))[index] if isinstance(index, slice) else index.reshape(-1).tolist()
        )
        out = np.empty((len(positions), self._size), dtype=np.uint8)
        for row, position in enumerate(positions):
            out[row] = self._unpacked(position)
        return torch.from_numpy(out).reshape(len(positions), *self.shape)


Pixels = torch.Tensor | PackedPixels


def as_input(tensors: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W to normalized float: conversion happens when loading, not in storage."""
    return (tensors.float() / 255.0 - MEAN) / STD


@dataclass(frozen=True)
class TrainConfig:
    # The learning-rate cycle's length and an upper bound: training stops earlier once
    # held-out accuracy stops improving (the demo's 132 photos: about 20 epochs).
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    # Bounds the cost at any number of labels: with tens of thousands of labelled photos,
    # fewer passes over far more data train as well.
    max_steps: int = 1200
    # Epochs without a better held-out accuracy before training stops (the best epoch's
    # weights are kept); 0 trains every epoch. Needs held-out views to score.
    patience: int = 5


@dataclass(frozen=True)
class HeldOut:
    """Views scored after every epoch (uint8 pixels, label indices): when they stop
    improving, training stops."""

    pixels: Pixels
    content: torch.Tensor
    style: torch.Tensor


@dataclass(frozen=True)
class Trained:
    model: PhotoNet
    weights: bytes
    weights_sha256: str
    losses: list[float]  # mean training loss per epoch run
    # per epoch run: held-out (content, style) accuracy; empty without held-out views
    accuracies: list[tuple[float, float]] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch whose weights these are (the last one without scores)


def train_classifier(
    pixels: Pixels,
    content: torch.Tensor,
    style: torch.Tensor,
    config: TrainConfig,
    device: torch.device | None = None,
    *,
    held_out: HeldOut | None = None,
    log: Callable[[str], None] | None = None,
) -> Trained:
    """Fit PhotoNet on uint8 images (a tensor, or packed) and integer labels.

    With `held_out`, both heads are scored after every epoch; training stops after
    `config.patience` epochs without a better held-out accuracy (content + style) and
    keeps the best epoch's weights (the lower loss breaking ties between equally
    accurate epochs). `log` gets one line
    per epoch: loss, held-out accuracy, time per epoch and the ETA of the remaining
    epochs at most. On the CPU the same inputs give bit-identical weights (seeded,
    deterministic algorithms); on CUDA results agree up to floating-point tolerance.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    per_epoch = max(1, -(-len(pixels) // config.batch_size))
    steps = min(config.max_steps, config.epochs * per_epoch)
    epochs = -(-steps // per_epoch)
    progress = Progress("training", epochs, log or (lambda _: None), unit="epochs", every=0)
    try:
        model = PhotoNet().to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=steps
        )
        loss_fn = nn.CrossEntropyLoss(ignore_index=UNKNOWN)
        losses: list[float] = []
        accuracies: list[tuple[float, float]] = []
        best: tuple[float, float] | None = None
        best_state, best_epoch = None, 0
        # Patience counts from the last epoch that raised held-out accuracy: a lower loss
        # picks between equally accurate epochs, but does not keep training alive.
        best_accuracy, gained = -1.0, 0
        done = epoch = 0
        for epoch in range(1, epochs + 1):
            failpoint("classifier/epoch")
            model.train()
            order = torch.randperm(len(pixels), generator=generator)
            total, seen = torch.zeros((), device=device), 0
            for start in range(0, len(order), config.batch_size):
                if done == steps:
                    break
                index = order[start : start + config.batch_size]
                batch = symmetries(pixels[index], generator).to(device, non_blocking=True)
                content_logits, style_logits = model(as_input(batch))
                loss = head_loss(loss_fn, content_logits, content[index]) + head_loss(
                    loss_fn, style_logits, style[index]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                done += 1
                total, seen = total + loss.detach() * len(index), seen + len(index)
            losses.append(float(total) / seen)  # one device sync per epoch, not per step
            note = f"loss {losses[-1]:.3f}"
            if held_out is not None and len(held_out.pixels):
                scores = held_out_accuracy(model, held_out, device)
                accuracies.append(scores)
                candidate = (scores[0] + scores[1], -losses[-1])
                if best is None or candidate > best:
                    best, best_epoch = candidate, epoch
                    best_state = copy.deepcopy(model.state_dict())
                if candidate[0] > best_accuracy:
                    best_accuracy, gained = candidate[0], epoch
                note += (
                    f", held-out accuracy content {scores[0]:.3f} style {scores[1]:.3f}"
                    f" (best: epoch {best_epoch})"
                )
            progress.advance(1, note)
            if best is not None and best[0] >= 2.0:
                break  # both heads right on every held-out view: nothing left to gain
            if best is not None and config.patience and epoch - gained >= config.patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = len(losses)
        progress.close(f"kept epoch {best_epoch}" + (" (stopped early)" if epoch < epochs else ""))
    finally:
        torch.use_deterministic_algorithms(previous)
    model = model.cpu().eval()
    weights = serialized(model)
    return Trained(
        model, weights, hashlib.sha256(weights).hexdigest(), losses, accuracies, best_epoch
    )


@torch.no_grad()
def held_out_accuracy(
    model: PhotoNet, held_out: HeldOut, device: torch.device
) -> tuple[float, float]:
    """Content and style accuracy on the held-out views (eval mode, then back to training)."""
    content, style = predict(
        model, held_out.pixels, device=device, batch_size=inference_batch_size(device)
    )
    model.train()
    return accuracy(content, held_out.content), accuracy(style, held_out.style)


def head_loss(
    loss_fn: nn.CrossEntropyLoss, logits: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The head's loss over its known targets; zero for a batch where all are UNKNOWN
    (cross-entropy would be 0/0 there). `targets` stay on the CPU until that is known,
    so the test costs no wait on the device."""
    if bool((targets == UNKNOWN).all()):
        return logits.sum() * 0.0
    return loss_fn(logits, targets.to(logits.device))


def symmetries(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Seeded flips, quarter turns and shifts per image: free views the labels ignore.

    Made on the CPU, then moved: on a GPU the per-image ops cost more in kernel
    launches than the copy (H100: 1.41 s against 1.69 s for 300 steps), and
    whole-batch gathers are 3x slower than this loop on the CPU.
    """
    turns = torch.randint(0, 4, (len(batch),), generator=generator).tolist()
    flips = (torch.rand(len(batch), generator=generator) < 0.5).tolist()
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (len(batch), 2), generator=generator).tolist()
    return torch.stack(
        [
            torch.rot90(image.flip(-1) if flip else image, turn, dims=(-2, -1)).roll(
                shift, dims=(-2, -1)
            )
            for image, turn, flip, shift in zip(batch, turns, flips, shifts, strict=True)
        ]
    )


def serialized(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def load_classifier(weights: bytes) -> PhotoNet:
    model = PhotoNet()
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    return model.eval()


def inference_batch_size(device: torch.device) -> int:
    """Images per inference batch: 256 fill a GPU; on the CPU 64 are as fast per image
    (1.63 s against 1.77 s for 4,096 views here) and hold a quarter of the activations
    (+102 against +360 MiB), which glibc's heap then keeps resident between batches."""
    return 256 if device.type == "cuda" else 64


@torch.no_grad()
def predict(
    model: PhotoNet,
    pixels: Pixels,
    *,
    device: torch.device,
    batch_size: int,
    mixed_precision: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Content and style probabilities (float32, on the CPU) for uint8 images, batch by batch."""
    model = model.to(device).eval()
    contents, styles = [], []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size]
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=mixed_precision and device.type == "cuda"):
            content_logits, style_logits = model(as_input(batch))
        contents.append(content_logits.float().softmax(1).cpu())
        styles.append(style_logits.float().softmax(1).cpu())
    empty = torch.empty((0,))
    return (
        torch.cat(contents) if contents else empty.reshape(0, len(CONTENT_CLASSES)),
        torch.cat(styles) if styles else empty.reshape(0, len(STYLES)),
    )


def accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((probabilities.argmax(1) == labels).float().mean())
