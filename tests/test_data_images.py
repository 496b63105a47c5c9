"""Decoding every kind of image file into square RGB, and rejecting unusable ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from competition.images import ImageRejected, load_square_rgb
from tests.fixtures_data import write_bad_kinds, write_good_kinds, write_jpeg, write_two_tone_jpeg

SIZE = 64


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_good_kinds(tmp_path_factory.mktemp("good"))


@pytest.mark.parametrize("kind", ["greyscale", "cmyk", "rgba", "palette", "png_named_jpg", "exif_rotated"])
def test_every_convertible_kind_becomes_square_uint8_rgb(good, kind):
    pixels = load_square_rgb(good[kind], SIZE)
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8


def test_colours_survive_conversion(good):
    grey = load_square_rgb(good["greyscale"], SIZE).astype(int)
    assert np.abs(grey - 128).max() <= 2
    for kind, colour in (("cmyk", (200, 30, 30)), ("rgba", (200, 30, 30)),
                         ("palette", (30, 200, 30)), ("png_named_jpg", (30, 30, 200))):
        mean = load_square_rgb(good[kind], SIZE).reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colour).max() < 12, kind


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (0, 0, 0, 0)).save(path)
    assert load_square_rgb(path, SIZE).min() == 255


def test_exif_orientation_is_applied(good, tmp_path):
    # stored: top red, bottom blue; orientation 6 displays it turned 90 degrees clockwise: left blue, right red
    rotated = load_square_rgb(good["exif_rotated"], SIZE).astype(int)
    left, right = rotated[SIZE // 2, 4], rotated[SIZE // 2, SIZE - 5]
    assert left[2] > 200 and left[0] < 50, left
    assert right[0] > 200 and right[2] < 50, right
    upright = load_square_rgb(write_two_tone_jpeg(tmp_path / "upright.jpg"), SIZE).astype(int)
    assert upright[4, SIZE // 2][0] > 200 and upright[SIZE - 5, SIZE // 2][2] > 200


def test_shorter_side_is_resized_then_centre_cropped(tmp_path):
    # 400x200: a 100-pixel black band at each end of the long side, white in the middle 200x200
    image = Image.new("RGB", (400, 200), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 100, 200))
    image.paste((0, 0, 0), (300, 0, 400, 200))
    path = tmp_path / "wide.png"
    image.save(path)
    pixels = load_square_rgb(path, SIZE)
    assert pixels.min() >= 250  # only the white centre square is kept


def test_large_jpeg_shrunk_on_load_matches_a_full_decode(tmp_path):
    gradient = np.linspace(0, 255, 1200, dtype=np.uint8)[None, :, None].repeat(900, 0).repeat(3, 2)
    path = tmp_path / "large.jpg"
    Image.fromarray(gradient).save(path, quality=95)
    reference = np.asarray(Image.open(path).convert("RGB").crop((150, 0, 1050, 900)).resize((SIZE, SIZE), Image.BOX))
    fast = load_square_rgb(path, SIZE)
    assert np.abs(fast.astype(int) - reference.astype(int)).mean() < 3


def test_small_images_are_upscaled(tmp_path):
    assert load_square_rgb(write_jpeg(tmp_path / "tiny.jpg", size=(40, 30)), SIZE).shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize("kind,reason", [
    ("corrupt", "corrupt"), ("truncated", "truncated"), ("empty", "empty"), ("non_image", "not an image"),
])
def test_unusable_files_are_rejected_with_a_reason(tmp_path, kind, reason):
    bad = write_bad_kinds(tmp_path)
    with pytest.raises(ImageRejected, match=reason):
        load_square_rgb(bad[kind], SIZE)
