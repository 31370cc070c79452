"""Classifier throughput on the CPU and, if present, CUDA: inference (`predict`) and training.

    .venv/bin/python -m bench.classify [--images N] [--batch-size B] [--repeats R]
                                       [--train-steps S]

Inference: random uint8 N×3×96×96 images, an untrained PhotoNet in eval mode
(the weights do not change the cost). One untimed warm-up run per row (cuDNN
autotuning, allocator), then R timed runs; the best counts. `predict` returns
float32 probabilities on the CPU, so every timing includes the copies both ways.

Training: `train_classifier` for S steps of its default batch on the same
images with random labels, once per device after a short warm-up; the loop is
the product's own (seeded symmetries on the CPU, one optimizer step per batch).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from lakehouse.models.classifier import (
    PhotoNet,
    TrainConfig,
    predict,
    train_classifier,
)
from lakehouse.vocabulary import CONTENT_CLASSES, INPUT_SIZE, STYLES


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    device: str
    mixed_precision: bool
    seconds: float
    images: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images to classify")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (best wins)")
    parser.add_argument("--train-steps", type=int, default=200, help="training steps per device")
    return parser.parse_args()


def random_pixels(images: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    shape = (images, 3, INPUT_SIZE, INPUT_SIZE)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def measure(
    model: PhotoNet,
    pixels: torch.Tensor,
    device: torch.device,
    batch_size: int,
    mixed_precision: bool,
    repeats: int,
) -> tuple[Row, torch.Tensor]:
    """Best seconds of `predict` after one warm-up; also the content probabilities."""

    def once() -> torch.Tensor:
        content, _ = predict(
            model, pixels, device=device, batch_size=batch_size, mixed_precision=mixed_precision
        )
        return content

    probabilities = once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return Row(device.type, mixed_precision, best, len(pixels)), probabilities


def configurations() -> list[tuple[torch.device, bool]]:
    """The CPU always; CUDA in fp32 and with autocast when a GPU is there."""
    found = [(torch.device("cpu"), False)]
    if torch.cuda.is_available():
        found += [(torch.device("cuda"), False), (torch.device("cuda"), True)]
    return found


def print_report(rows: list[Row], max_differences: list[float]) -> None:
    header = f"{'device':<8}{'mixed precision':>16}{'seconds':>10}{'images/s':>12}"
    print(header + f"{'max |p - p_cpu|':>18}")
    for row, difference in zip(rows, max_differences, strict=True):
        print(
            f"{row.device:<8}{str(row.mixed_precision):>16}{row.seconds:10.3f}"
            f"{row.images_per_s:12.0f}{difference:18.2e}"
        )
    cpu = rows[0]
    for row in rows[1:]:
        kind = "mixed precision" if row.mixed_precision else "fp32"
        print(f"ratio GPU ({kind}) / CPU in images/s: {row.images_per_s / cpu.images_per_s:.1f}")
    if len(rows) == 1:
        print("no CUDA device: CPU only")


def train_seconds(pixels: torch.Tensor, device: torch.device, steps: int) -> float:
    """Seconds of `train_classifier` for `steps` steps on `device`, after a 5-step warm-up."""
    generator = torch.Generator().manual_seed(1)
    content = torch.randint(0, len(CONTENT_CLASSES), (len(pixels),), generator=generator)
    style = torch.randint(0, len(STYLES), (len(pixels),), generator=generator)

    def run(count: int) -> float:
        config = TrainConfig(epochs=10**6, max_steps=count)
        start = time.perf_counter()
        train_classifier(pixels, content, style, config, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run(5)
    return run(steps)


def print_training(pixels: torch.Tensor, steps: int) -> None:
    """Training images per second on each device, and CUDA's ratio to the CPU."""
    batch = TrainConfig().batch_size
    rates = {}
    for device, mixed in configurations():
        if mixed:
            continue
        seconds = train_seconds(pixels, device, steps)
        rates[device.type] = steps * batch / seconds
        print(
            f"training on {device.type}: {steps} steps of {batch} in {seconds:.2f} s, "
            f"{rates[device.type]:.0f} images/s"
        )
    if "cuda" in rates:
        print(f"ratio GPU / CPU in training images/s: {rates['cuda'] / rates['cpu']:.1f}")


def main() -> int:
    args = parse_args()
    torch.manual_seed(0)
    model = PhotoNet().eval()
    pixels = random_pixels(args.images)
    print(
        f"{args.images} images 3x{INPUT_SIZE}x{INPUT_SIZE} uint8, batch {args.batch_size}, "
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
        + f"; best of {args.repeats}\n"
    )
    rows, differences, reference = [], [], None
    for device, mixed in configurations():
        row, probabilities = measure(model, pixels, device, args.batch_size, mixed, args.repeats)
        reference = probabilities if reference is None else reference
        rows.append(row)
        differences.append(float((probabilities - reference).abs().max()))
    print_report(rows, differences)
    if args.train_steps:
        print()
        print_training(pixels, args.train_steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
