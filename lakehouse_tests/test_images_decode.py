"""Decoding every kind of photo a bucket holds, and deterministic augmentation of the result.

All images are built here with PIL/numpy (or byte by byte where PIL refuses to
write them), so each case states exactly which bytes it feeds in.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from deltalake import DeltaTable, write_deltalake
from PIL import Image, ImageFile

from bench.peer_loader import torchvision_recipe
from lakehouse.curated.augment import (
    RECIPE,
    augment,
    augmented_batches,
    row_seed,
    tensor_rows,
    tensors_from_arrow,
)
from lakehouse.curated.decode import DecodedImage, DecodeError, decode_image
from lakehouse.curated.recipe import ViewBatch

pytestmark = pytest.mark.images

EXIF_ORIENTATION = 0x0112
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
SIZE = RECIPE.size


# --- building inputs ---------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, idat: bytes = b"", bit_depth: int = 1) -> bytes:
    """A grayscale PNG written byte by byte: PIL refuses to write some headers we need."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def black_bilevel_png(side: int) -> bytes:
    """A real, complete 1-bit side×side PNG: 100 M pixels compress to about 12 KB."""
    row = b"\x00" + bytes(-(-side // 8))  # filter byte + packed bits
    return handmade_png(side, side, zlib.compress(row * side, 9))


def marked_photo(width: int = 20, height: int = 10) -> Image.Image:
    """White, with a red 4×4 block in the top-left corner to track where pixels go."""
    image = Image.new("RGB", (width, height), WHITE)
    image.paste(RED, (0, 0, 4, 4))
    return image


def jpeg_with_orientation(image: Image.Image, orientation: int | None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    return encoded(image, "JPEG", quality=95, exif=exif.tobytes())


def noisy_photo(seed: int, size: tuple[int, int] = (120, 80)) -> Image.Image:
    """Random pixels: every augmentation visibly changes them, and JPEG cannot shrink them."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def pixels_of(decoded: DecodedImage) -> np.ndarray:
    assert decoded.image.mode == "RGB"
    return np.asarray(decoded.image)


def close_to(pixel: np.ndarray, expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(expected)) <= tolerance))


# --- EXIF orientation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "quarter_turns", "red_corner"),
    [(6, -1, (0, 9)), (8, 1, (19, 0))],  # 6: turn clockwise; 8: counter-clockwise
)
def test_exif_orientation_is_applied(
    orientation: int, quarter_turns: int, red_corner: tuple[int, int]
) -> None:
    stored = pixels_of(decode_image(jpeg_with_orientation(marked_photo(), None)))
    upright = decode_image(jpeg_with_orientation(marked_photo(), orientation))
    assert (upright.width, upright.height) == (10, 20)
    got = pixels_of(upright)
    assert np.array_equal(got, np.rot90(stored, quarter_turns))
    row, column = red_corner
    assert close_to(got[row, column], RED)
    assert close_to(got[10, 5], WHITE)


def test_without_orientation_the_image_is_left_as_stored() -> None:
    decoded = decode_image(jpeg_with_orientation(marked_photo(), 1))
    assert (decoded.width, decoded.height) == (20, 10)
    assert close_to(pixels_of(decoded)[0, 0], RED)


# --- modes that become 8-bit RGB ---------------------------------------------------


def test_grayscale_l_becomes_rgb() -> None:
    gray = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8), mode="L")
    decoded = decode_image(encoded(gray, "PNG"))
    assert decoded.original_mode == "L"
    assert pixels_of(decoded).tolist() == [[[0] * 3, [100] * 3, [255] * 3]]


def test_bilevel_1_becomes_rgb() -> None:
    bilevel = Image.new("1", (4, 1), 0)
    bilevel.putpixel((2, 0), 1)
    decoded = decode_image(encoded(bilevel, "PNG"))
    assert decoded.original_mode == "1"
    assert pixels_of(decoded)[0, :, 0].tolist() == [0, 0, 255, 0]


def palette_image(transparent_index: int | None) -> bytes:
    """A 3-pixel palette PNG: indices 0 (red), 1 (blue), 2 (green)."""
    image = Image.new("P", (3, 1))
    image.putpalette([*RED, *BLUE, 0, 255, 0] + [0] * (253 * 3))
    image.putdata([0, 1, 2])
    options = {} if transparent_index is None else {"transparency": transparent_index}
    return encoded(image, "PNG", **options)


def test_palette_without_transparency_is_expanded() -> None:
    decoded = decode_image(palette_image(None))
    assert decoded.original_mode == "P"
    assert pixels_of(decoded).tolist() == [[list(RED), list(BLUE), [0, 255, 0]]]


def test_palette_with_transparency_composites_on_white() -> None:
    decoded = decode_image(palette_image(transparent_index=1))
    assert decoded.original_mode == "P"
    assert pixels_of(decoded).tolist() == [[list(RED), list(WHITE), [0, 255, 0]]]


def test_rgba_composites_on_white() -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(10, 20, 30, 255), (0, 0, 0, 0), (0, 0, 0, 128)])
    decoded = decode_image(encoded(rgba, "PNG"))
    assert decoded.original_mode == "RGBA"
    opaque, clear, half = pixels_of(decoded)[0]
    assert opaque.tolist() == [10, 20, 30]
    assert clear.tolist() == list(WHITE)
    assert close_to(half, (127, 127, 127), tolerance=1)  # black at 50 % over white


def test_la_composites_on_white() -> None:
    la = Image.new("LA", (2, 1))
    la.putdata([(40, 255), (40, 0)])
    decoded = decode_image(encoded(la, "PNG"))
    assert decoded.original_mode == "LA"
    assert pixels_of(decoded).tolist() == [[[40] * 3, list(WHITE)]]


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 8), (0, 0, 0, 0))  # no ink: white
    cmyk.paste((0, 255, 255, 0), (8, 0, 16, 8))  # magenta + yellow: red
    decoded = decode_image(encoded(cmyk, "JPEG", quality=95))
    assert decoded.original_mode == "CMYK"
    assert decoded.media_type == "image/jpeg"
    pixels = pixels_of(decoded)
    assert close_to(pixels[4, 2], WHITE)
    assert close_to(pixels[4, 13], RED)


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    values = np.array([[0, 65535, 32768, 1000]], dtype=np.uint16)
    decoded = decode_image(encoded(Image.fromarray(values), "PNG"))
    assert decoded.original_mode == "I;16"
    assert pixels_of(decoded)[0, :, 0].tolist() == [0, 255, 128, 4]  # round(v * 255 / 65535)
    assert np.array_equal(pixels_of(decoded)[..., 0], pixels_of(decoded)[..., 2])


def test_rgb_stays_as_it_is() -> None:
    photo = noisy_photo(1, (8, 4))
    decoded = decode_image(encoded(photo, "PNG"))
    assert decoded.original_mode == "RGB"
    assert np.array_equal(pixels_of(decoded), np.asarray(photo))


# --- the bytes decide the format ---------------------------------------------------


def test_bytes_decide_the_media_type_not_the_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "holiday.jpg"
    misnamed.write_bytes(encoded(noisy_photo(2, (6, 6)), "PNG"))
    decoded = decode_image(misnamed.read_bytes())
    assert decoded.media_type == "image/png"
    assert decode_image(encoded(noisy_photo(2, (6, 6)), "JPEG")).media_type == "image/jpeg"


# --- inputs that are refused, with their reason ------------------------------------


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"empty object \(0 bytes\)"):
        decode_image(b"")


def test_html_page_is_refused_as_not_an_image() -> None:
    page = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>"
    with pytest.raises(DecodeError, match="not an image"):
        decode_image(page)


def test_jpeg_truncated_in_its_pixel_data_is_refused() -> None:
    whole = encoded(noisy_photo(3, (200, 200)), "JPEG", quality=90)
    with pytest.raises(DecodeError) as refused:
        decode_image(whole[: int(len(whole) * 0.6)])
    message = str(refused.value)
    assert "corrupt or truncated image data" in message
    assert "truncated" in message.split(":", 1)[1]  # PIL's own words follow


def test_jpeg_truncated_in_its_header_is_refused() -> None:
    whole = encoded(Image.new("RGB", (64, 64), BLUE), "JPEG")
    with pytest.raises(DecodeError, match="(?i)truncated"):
        decode_image(whole[:200])


def test_zero_size_image_is_refused() -> None:
    # PIL will not write a 0-pixel image ("cannot write empty image"), so the PNG is
    # built by hand. PIL also refuses to open it, so the reason comes from the
    # "no known format" branch rather than the zero-size check.
    with pytest.raises(ValueError, match="cannot write empty image"):
        encoded(Image.new("RGB", (0, 5)), "PNG")
    for width, height in ((0, 10), (10, 0)):
        with pytest.raises(DecodeError, match="not an image"):
            decode_image(handmade_png(width, height, zlib.compress(b"")))


class LoadSpy:
    """Replaces ImageFile.load: any call means pixels were about to be decoded."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: ImageFile.ImageFile) -> None:
        self.calls += 1
        raise AssertionError("pixels decoded before the size was checked")


@pytest.fixture
def load_spy(monkeypatch: pytest.MonkeyPatch) -> LoadSpy:
    spy = LoadSpy()
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return spy


def test_pixel_limit_refuses_before_decoding(load_spy: LoadSpy) -> None:
    with pytest.raises(DecodeError, match="decompression bomb") as refused:
        decode_image(encoded(noisy_photo(4, (20, 10)), "PNG"), pixel_limit=100)
    assert "20x10" in str(refused.value)
    assert load_spy.calls == 0


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_real_bilevel_bomb_is_refused_before_decoding(load_spy: LoadSpy) -> None:
    bomb = black_bilevel_png(10_000)
    assert len(bomb) < 20_000  # 100 M pixels in a few kilobytes
    with pytest.raises(DecodeError, match="decompression bomb") as refused:
        decode_image(bomb)
    assert "10000x10000" in str(refused.value)
    assert load_spy.calls == 0


def test_header_only_giant_png_is_refused(load_spy: LoadSpy) -> None:
    # No pixel data at all: had decoding started, the reason would be "truncated".
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(handmade_png(20_000, 20_000))
    assert load_spy.calls == 0


# --- augmentation ------------------------------------------------------------------


def test_row_seed_depends_on_sha_index_and_recipe_only() -> None:
    assert row_seed("ab" * 32, 1, "1") == row_seed("ab" * 32, 1, "1")
    seeds = {row_seed(sha, i, v) for sha in ("a", "b") for i in (1, 2) for v in ("1", "2")}
    assert len(seeds) == 8
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_augment_is_deterministic_for_the_same_image_and_sha() -> None:
    image = noisy_photo(5)
    first = augment(image, "ab" * 32, 4, RECIPE)
    np.random.seed(12345)  # no global random state is used
    torch.manual_seed(12345)
    second = augment(image, "ab" * 32, 4, RECIPE)
    assert first.shape == (4, 3, SIZE, SIZE) and first.dtype == np.uint8
    assert first.tobytes() == second.tobytes()


def test_index_zero_is_the_plain_resize() -> None:
    image = noisy_photo(6)
    views = augment(image, "cd" * 32, 3, RECIPE)
    plain = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(views[0], plain)
    assert not np.array_equal(views[1], views[0])
    assert not np.array_equal(views[2], views[1])


def test_index_zero_matches_torchvision_resize_of_the_pil_image() -> None:
    image = noisy_photo(6)
    plain, _ = torchvision_recipe()
    expected = np.asarray(plain(image)).transpose(2, 0, 1)
    assert np.array_equal(augment(image, "cd" * 32, 1, RECIPE)[0], expected)


def test_different_sha_gives_different_views() -> None:
    image = noisy_photo(7)
    one = augment(image, "01" * 32, 3, RECIPE)
    other = augment(image, "02" * 32, 3, RECIPE)
    assert np.array_equal(one[0], other[0])  # the plain view has no randomness
    assert not np.array_equal(one[1], other[1])
    assert not np.array_equal(one[2], other[2])


def test_views_stay_close_to_the_image() -> None:
    """A random view is a crop of at least 70 % of the area, turned at most 10 degrees and
    lit within 10 %: a flat grey photo stays grey away from the rotated corners."""
    grey = Image.new("RGB", (120, 80), (128, 128, 128))
    views = augment(grey, "ef" * 32, 4, RECIPE)
    centre = views[:, :, SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4]
    assert np.all(np.abs(centre.astype(int) - 128) <= 128 * 0.1 + 2)


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[tuple[str, str]]]:
    """A few PNGs (and one bad object) in a directory used as the object store."""
    root = tmp_path_factory.mktemp("store")
    (root / "photos").mkdir()
    items = []
    for n in range(5):
        key = f"photos/{n:03d}.png"
        (root / key).write_bytes(encoded(noisy_photo(100 + n, (70 + 10 * n, 60)), "PNG"))
        items.append((f"{n:02d}" * 32, key))
    (root / "photos/bad.jpg").write_bytes(b"<html>not a photo</html>")
    items.append(("ff" * 32, "photos/bad.jpg"))
    return str(root), items


def collect_views(
    store_uri: str, items: list[tuple[str, str]], workers: int, per_batch: int = 2
) -> tuple[dict[tuple[str, int], bytes], list[tuple[str, str]]]:
    views, failures = {}, []
    batches = augmented_batches(
        store_uri, items, k=3, recipe=RECIPE, workers=workers, images_per_batch=per_batch
    )
    for rows, failed in batches:
        for sha, index, tensor in rows.select("sha256", "aug_index", "tensor").iter_rows():
            views[(sha, index)] = tensor
        failures += failed
    return views, failures


@pytest.mark.speed
def test_augmented_batches_do_not_depend_on_worker_count(
    photo_store: tuple[str, list[tuple[str, str]]],
) -> None:
    """The same bytes per (sha256, aug_index, recipe version) with no workers, one or two,
    in any batch size and in reversed order."""
    store_uri, items = photo_store
    serial, serial_failures = collect_views(store_uri, items, workers=0)
    one, one_failures = collect_views(store_uri, items[::-1], workers=1, per_batch=3)
    parallel, parallel_failures = collect_views(store_uri, items, workers=2, per_batch=1)
    assert len(serial) == 5 * 3
    assert serial.keys() == parallel.keys() == one.keys()
    for key, tensor in serial.items():
        assert parallel[key] == tensor, f"{key} differs between 0 and 2 workers"
        assert one[key] == tensor, f"{key} differs between 0 and 1 worker"
    for failures in (serial_failures, one_failures, parallel_failures):
        ((sha, reason),) = failures
        assert sha == "ff" * 32 and "not an image" in reason


def test_augmented_batches_match_augment(photo_store: tuple[str, list[tuple[str, str]]]) -> None:
    store_uri, items = photo_store
    views, _ = collect_views(store_uri, items[:1], workers=0)
    sha, key = items[0]
    decoded = decode_image((Path(store_uri) / key).read_bytes())
    expected = augment(decoded.image, sha, 3, RECIPE)
    assert [views[(sha, i)] for i in range(3)] == [v.tobytes() for v in expected]


# --- tensors through Arrow and Delta -----------------------------------------------


@pytest.fixture
def rows_and_originals() -> tuple[pl.DataFrame, torch.Tensor]:
    shas = [f"{n:02x}" * 32 for n in (8, 9)]
    pixels = np.stack([augment(noisy_photo(n), "x", 2, RECIPE) for n in (8, 9)])
    originals = torch.from_numpy(pixels.reshape(4, 3, SIZE, SIZE).copy())
    return tensor_rows(ViewBatch(shas, pixels, []), 2, RECIPE), originals


def test_tensor_rows_schema_and_seeds(
    rows_and_originals: tuple[pl.DataFrame, torch.Tensor],
) -> None:
    rows, _ = rows_and_originals
    assert rows.height == 4
    assert rows["aug_index"].to_list() == [0, 1, 0, 1]
    assert rows["shape"].to_list() == [[3, SIZE, SIZE]] * 4
    assert set(rows["dtype"]) == {"uint8"}
    first_sha = rows["sha256"][0]
    assert rows["seed"].to_list()[:2] == [0, row_seed(first_sha, 1, RECIPE.version)]


def test_tensors_from_arrow_round_trips(
    rows_and_originals: tuple[pl.DataFrame, torch.Tensor],
) -> None:
    rows, originals = rows_and_originals
    column = rows.to_arrow()["tensor"]
    tensors = tensors_from_arrow(column, (3, SIZE, SIZE))
    assert tensors.shape == (4, 3, SIZE, SIZE) and tensors.dtype == torch.uint8
    assert torch.equal(tensors, originals)
    sliced = tensors_from_arrow(column.combine_chunks().slice(1, 2), (3, SIZE, SIZE))
    assert torch.equal(sliced, originals[1:3])


def test_tensors_from_arrow_round_trips_through_delta(
    tmp_path: Path, rows_and_originals: tuple[pl.DataFrame, torch.Tensor]
) -> None:
    rows, originals = rows_and_originals
    write_deltalake(str(tmp_path / "augmented_tensors"), rows.to_arrow())
    table = DeltaTable(str(tmp_path / "augmented_tensors")).to_pyarrow_table()
    table = table.sort_by([("sha256", "ascending"), ("aug_index", "ascending")])
    tensors = tensors_from_arrow(table["tensor"], (3, SIZE, SIZE))
    assert torch.equal(tensors, originals)


@pytest.mark.speed
def test_tensors_from_arrow_copies_only_the_rows_asked_for(
    rows_and_originals: tuple[pl.DataFrame, torch.Tensor],
) -> None:
    """Rows picked by position, in the order asked, also when rows of another size sit
    between them (another recipe's views in the same row group)."""
    rows, originals = rows_and_originals
    column = rows.to_arrow()["tensor"]
    picked = tensors_from_arrow(column, (3, SIZE, SIZE), np.array([3, 0, 2]))
    assert torch.equal(picked, originals[[3, 0, 2]])
    mixed = pa.chunked_array(
        [
            pa.concat_arrays(
                [
                    column.combine_chunks().slice(0, 2),
                    pa.array([b"x" * 12]).cast(column.type),
                    column.combine_chunks().slice(2, 2),
                ]
            )
        ]
    )
    assert torch.equal(
        tensors_from_arrow(mixed, (3, SIZE, SIZE), np.array([4, 1])), originals[[3, 1]]
    )
    with pytest.raises(ValueError, match="not all of shape"):
        tensors_from_arrow(mixed, (3, SIZE, SIZE), np.array([2]))
    assert tensors_from_arrow(column, (3, SIZE, SIZE), np.array([], dtype=np.int64)).shape[0] == 0


def test_tensors_from_arrow_rejects_the_wrong_shape(
    rows_and_originals: tuple[pl.DataFrame, torch.Tensor],
) -> None:
    rows, _ = rows_and_originals
    with pytest.raises(ValueError, match="not all of shape"):
        tensors_from_arrow(rows.to_arrow()["tensor"], (3, 64, 64))
    assert tensors_from_arrow(rows.head(0).to_arrow()["tensor"], (3, 8, 8)).shape == (0, 3, 8, 8)
