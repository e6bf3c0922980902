"""scikit-learn's bundled 8x8 digits and torch augmentations with one strength ``s`` (docs/THEORY.md §6).

Images are scaled by one global constant so that the mean squared norm over all 1,797 images is 1: a
bias-free network is positively homogeneous, so this sets the scale of r = 1/2 ||f(x1) - f(x2)||^2 and
hence what a temperature tau means. Augmentations act on (B, 8, 8) images and are fixed by a draw of
random numbers (``draw_augmentations``) and the strength ``s`` in [0, 1] (``augment``):

- translation: a zero-padded crop, shifted by ``s * MAX_SHIFT`` pixels times u ~ U[-1, 1] per axis;
  sub-pixel shifts blend the two neighbouring integer crops (bilinear), so the strength is continuous;
- rotation about the centre by ``s * MAX_ANGLE_DEG`` degrees times u ~ U[-1, 1], bilinear, zero fill;
- pixel noise ``s * NOISE_SD`` (in units of the brightest pixel) times N(0, 1);
- random erasing: with probability ``ERASE_PROB`` a square of side 2 or 3 is multiplied by (1 - s),
  so it is erased completely at s = 1.

At s = 0 every augmentation is the identity, exactly (all four terms vanish in floating point).
One draw reused at several strengths rescales the same augmentation pattern, as ``gaussian_augmented`` does.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from dualnet_ssl.errors import BadInput
from dualnet_ssl.seeding import make_generator

INSTALL_HINT = 'pip install -e ".[digits]"'
SIZE = 8
MAX_SHIFT = 1.0
MAX_ANGLE_DEG = 15.0
NOISE_SD = 0.1
ERASE_PROB = 0.5
ERASE_SIDES = (2, 3)


@dataclass(frozen=True)
class Digits:
    images: torch.Tensor   # (1797, 8, 8) float64, scaled so that the mean squared norm is 1
    labels: torch.Tensor   # (1797,) int64, 0-9
    max_intensity: float   # the scaled value of the brightest pixel (16 in the raw data)


@functools.lru_cache(maxsize=1)
def load_digits() -> Digits:
    """All 1,797 digits from scikit-learn (bundled, nothing is downloaded); needs the ``digits`` extra."""
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:   # pragma: no cover - exercised only without the extra
        raise ImportError(f"the digits study needs scikit-learn: {INSTALL_HINT}") from error
    raw = sklearn_load_digits()
    images = torch.tensor(raw.images, dtype=torch.float64) / 16.0
    scale = float(images.flatten(1).pow(2).sum(1).mean().sqrt())
    return Digits(images / scale, torch.tensor(raw.target, dtype=torch.int64), 1.0 / scale)


def split_indices(n_total: int, n_test: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation cut into (train indices, test indices)."""
    if not 0 < n_test < n_total:
        raise BadInput(f"n_test must lie in 1..{n_total - 1}, got {n_test}")
    order = torch.randperm(n_total, generator=make_generator(seed))
    return order[n_test:], order[:n_test]


@dataclass(frozen=True)
class AugmentationDraw:
    """The random numbers of one augmentation per image; ``augment`` scales them by the strength."""

    shift: torch.Tensor        # (B, 2) in [-1, 1]: (rows, columns)
    angle: torch.Tensor        # (B,) in [-1, 1]
    noise: torch.Tensor        # (B, 8, 8) standard normal
    erase_mask: torch.Tensor   # (B, 8, 8) 1 inside the erased square, 0 elsewhere (all 0: no erasing)

    def __len__(self) -> int:
        return self.angle.shape[0]


def draw_augmentations(n: int, generator: torch.Generator) -> AugmentationDraw:
    """Random numbers for ``n`` augmentations, from a local generator."""
    if n < 1:
        raise BadInput(f"need at least one augmentation, got {n}")
    shift = 2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1
    angle = 2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1
    noise = torch.randn(n, SIZE, SIZE, generator=generator, dtype=torch.float64)
    erase = torch.rand(n, generator=generator, dtype=torch.float64) < ERASE_PROB
    sides = torch.tensor(ERASE_SIDES)[torch.randint(len(ERASE_SIDES), (n,), generator=generator)]
    top = (torch.rand(n, generator=generator, dtype=torch.float64) * (SIZE - sides + 1)).long()
    left = (torch.rand(n, generator=generator, dtype=torch.float64) * (SIZE - sides + 1)).long()
    grid = torch.arange(SIZE)
    rows = (grid[None] >= top[:, None]) & (grid[None] < (top + sides)[:, None])
    cols = (grid[None] >= left[:, None]) & (grid[None] < (left + sides)[:, None])
    mask = (rows[:, :, None] & cols[:, None, :] & erase[:, None, None]).to(torch.float64)
    return AugmentationDraw(shift, angle, noise, mask)


def _bilinear(images: torch.Tensor, src_row: torch.Tensor, src_col: torch.Tensor) -> torch.Tensor:
    """images sampled at real-valued source coordinates (B, 8, 8), bilinear, zero outside the image."""
    batch = torch.arange(images.shape[0])[:, None, None]
    row0, col0 = src_row.floor(), src_col.floor()
    w_row, w_col = src_row - row0, src_col - col0
    out = torch.zeros_like(images)
    for d_row, f_row in ((0, 1 - w_row), (1, w_row)):
        for d_col, f_col in ((0, 1 - w_col), (1, w_col)):
            r, c = (row0 + d_row).long(), (col0 + d_col).long()
            inside = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
            values = images[batch, r.clamp(0, SIZE - 1), c.clamp(0, SIZE - 1)] * inside
            out = out + f_row * f_col * values
    return out


def augment(images: torch.Tensor, draw: AugmentationDraw, s: float, max_intensity: float) -> torch.Tensor:
    """Rotate and translate (one bilinear warp), erase, add noise; (B, 8, 8) -> (B, 8, 8). Identity at s = 0."""
    s = float(s)
    if not 0.0 <= s <= 1.0:
        raise BadInput(f"augmentation strength s must lie in [0, 1], got {s}")
    if images.dim() != 3 or images.shape[1:] != (SIZE, SIZE) or images.shape[0] != len(draw):
        raise BadInput(f"expected images of shape ({len(draw)}, {SIZE}, {SIZE}), got {tuple(images.shape)}")
    dtype = images.dtype
    angle = (s * math.radians(MAX_ANGLE_DEG)) * draw.angle.to(dtype)
    shift = (s * MAX_SHIFT) * draw.shift.to(dtype)
    centre = (SIZE - 1) / 2
    grid = torch.arange(SIZE, dtype=dtype) - centre
    # output pixel p reads the source at R(-angle) (p - centre - shift) + centre
    row = grid[None, :, None] - shift[:, 0, None, None]
    col = grid[None, None, :] - shift[:, 1, None, None]
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    warped = _bilinear(images, cos * row + sin * col + centre, cos * col - sin * row + centre)
    erased = warped * (1 - s * draw.erase_mask.to(dtype))
    return erased + (s * NOISE_SD * max_intensity) * draw.noise.to(dtype)
