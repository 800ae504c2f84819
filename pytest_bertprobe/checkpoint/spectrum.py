"""Whether a weight matrix looks trained or like a random draw, from the matrix alone (docs/DESIGN.md §3).

A matrix whose entries were drawn independently (normal, truncated normal, uniform, xavier, kaiming: every
common initialisation) or shuffled has rows and columns of equal energy within sampling noise, and its
spectrum stays inside the Marchenko–Pastur bulk of a random matrix of its shape and entry variance. Training
leaves its mark on both: some input features and output units matter more than others, and a few directions
carry most of the signal. So a matrix looks random when

- the spread of its rows' and columns' L1 norms is within `SPREAD_RANDOM` of what independent entries with
  the same distribution give (its *energy spread*: 1 for such a matrix, whatever the distribution; 0 for an
  orthogonal one, whose rows have equal norms by construction), and
- its largest eigenvalue of W^T W / n is within `EDGE_RANDOM` of the Marchenko–Pastur edge of a random matrix of
  that shape, with the entry variance measured after clipping outlier entries (a shuffled trained matrix keeps
  its heavy-tailed entries; clipped, they obey the bulk).

The energy spread is one streaming pass over the matrix; the spectrum (power iteration) is measured only where
the spread already looks random, so a trained model pays one pass per matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MIN_SIDE = 64  # below it a matrix's statistics are sampling noise (Tracy–Widom: the edge wanders by >5% at 64)
SPREAD_RANDOM = 2.0  # random draws: 0.0-1.17 on MiniLM/MPNet shapes; trained matrices: 5.0 and up (§3)
EDGE_RANDOM = 1.1  # random draws: 0.25-1.03× the edge; a spike this far out is structure (§3)
_CLIP = 4.0  # entries past 4 robust standard deviations are clipped before the spectrum is measured
_ROWS_PER_COLUMN = 8  # a tall matrix (an embedding table) is read on every k-th row, up to 8 rows per column
_CHUNK_ELEMENTS = 1 << 18  # rows read at a time: 1 MB of float32, which stays in cache for the three sums
_SCALE_SAMPLE = 8192  # entries whose median and median deviation set the clipping bound
_ITERATIONS = 16  # power iterations; a spike past EDGE_RANDOM stops them early


@dataclass(frozen=True)
class MatrixStats:
    """What a weight matrix's entries say about training: its energy spread and, where measured, its spectrum."""

    shape: tuple[int, int]
    spread: float  # max over rows and columns of Var(L1 norms) / Var(L1 norms of independent entries)
    mean: float
    std: float
    edge: float | None = None  # largest eigenvalue / Marchenko–Pastur edge; None where the spread settles it

    @property
    def looks_random(self) -> bool:
        """Rows and columns as even as independent entries give, and no eigenvalue past the random bulk."""
        return self.spread < SPREAD_RANDOM and (self.edge is None or self.edge < EDGE_RANDOM)

    def metrics(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"shape": list(self.shape), "spread": round(self.spread, 4), "edge": None if self.edge is None else round(self.edge, 4),
                "mean": self.mean, "std": self.std}  # fmt: skip


def measure_matrix(weight: torch.Tensor, *, spectrum: bool = True) -> MatrixStats | None:
    """The matrix's energy spread, mean and std; its spectrum too when `spectrum` and the spread looks random.

    None for a matrix with a side under `MIN_SIDE` or without two finite, non-zero rows.
    """
    import torch

    if weight.dim() != 2 or min(weight.shape) < MIN_SIDE:
        return None
    with torch.no_grad():
        found = _energy(weight.detach())
        if found is None:
            return None
        spread, mean, std = found
        edge = edge_ratio(weight) if spectrum and spread < SPREAD_RANDOM else None
    return MatrixStats((int(weight.shape[0]), int(weight.shape[1])), spread, mean, std, edge)


def _energy(matrix: torch.Tensor) -> tuple[float, float, float] | None:
    """(energy spread, mean, std) in one pass over row chunks; rows all zero (a padding row) are left out."""
    import torch

    columns = matrix.shape[1]
    matrix = matrix[:: max(1, matrix.shape[0] // (_ROWS_PER_COLUMN * columns))]
    step = max(1, _CHUNK_ELEMENTS // columns)
    buffer = torch.empty(min(step, matrix.shape[0]), columns, dtype=torch.float32, device=matrix.device)
    row_norms, column_norms, total, squares = [], torch.zeros(columns, dtype=torch.float64, device=matrix.device), 0.0, 0.0
    for start in range(0, matrix.shape[0], step):
        chunk = matrix[start : start + step]
        part = buffer[: chunk.shape[0]]
        if chunk.dtype == torch.float32 and chunk.is_contiguous():  # |x| written straight into the buffer: one pass
            flat = chunk.reshape(-1)
            total, squares = total + float(flat.sum()), squares + float(torch.dot(flat, flat))
            torch.abs(chunk, out=part)
        else:
            part.copy_(chunk)
            flat = part.view(-1)
            total, squares = total + float(flat.sum()), squares + float(torch.dot(flat, flat))
            part.abs_()
        row_norms.append(part.sum(1))  # float32 sums of one row or chunk; accumulated in float64 below
        column_norms += part.sum(0).double()
    rows = torch.cat(row_norms).double()
    rows = rows[rows > 0]
    count = rows.numel() * columns
    if rows.numel() < 2 or not math.isfinite(squares):
        return None
    mean_abs = float(rows.sum()) / count
    variance_abs = squares / count - mean_abs**2  # Var|x| of one entry
    mean = total / count
    std = math.sqrt(max(squares / count - mean**2, 0.0))
    if variance_abs <= 0:
        return None
    spread = max(float(rows.var()) / (columns * variance_abs), float(column_norms.var()) / (rows.numel() * variance_abs))
    return spread, mean, std


def edge_ratio(weight: torch.Tensor, *, iterations: int = _ITERATIONS) -> float:
    """Largest eigenvalue of W^T W / n over the Marchenko–Pastur edge σ²(1 + √(m/n))², outlier entries clipped.

    n × m is the matrix's shape with n ≥ m (a tall matrix read on every k-th row, as for the energy spread).
    Power iteration from a fixed start: it approaches the largest eigenvalue from below and stops once past
    `EDGE_RANDOM`, so it never makes a random matrix look trained.
    """
    import torch

    with torch.no_grad():
        matrix = weight.detach()
        if matrix.shape[0] < matrix.shape[1]:
            matrix = matrix.T
        matrix = matrix[:: max(1, matrix.shape[0] // (_ROWS_PER_COLUMN * matrix.shape[1]))]
        flat = weight.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SCALE_SAMPLE)].float()
        center = sample.median()
        scale = float((sample - center).abs().median()) * 1.4826  # the normal's std from its median deviation
        clipped = (matrix.float() - center).clamp_(-_CLIP * scale, _CLIP * scale) if scale > 0 else matrix.float() - center
        clipped -= clipped.mean()
        rows, columns = clipped.shape
        variance = float(torch.linalg.vector_norm(clipped)) ** 2 / clipped.numel()
        edge = variance * (1 + math.sqrt(columns / rows)) ** 2
        if not variance > 0:
            return 0.0
        generator = torch.Generator().manual_seed(0)
        vector = torch.randn(columns, generator=generator).to(clipped.device)
        vector /= vector.norm()
        largest = 0.0
        for _ in range(iterations):
            product = clipped.T @ (clipped @ vector)
            largest = float(vector @ product) / rows
            if largest >= EDGE_RANDOM * edge or not product.any():
                break
            vector = product / product.norm()
        return largest / edge
