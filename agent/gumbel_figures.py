"""Documentation figures for the Gumbel utilities.

Run ``python -m agent.gumbel_figures [--out docs/figures]``.  matplotlib is imported inside
:func:`main` so that importing this module (e.g. from tests) never requires it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from agent.learning.gumbel import gumbel_pdf, gumbel_softmax, sample_gumbel
from agent.run.cli import parse

PDF_PARAMS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.0, 2.0), (2.0, 1.0), (-1.0, 0.5))
PROBS: tuple[float, ...] = (0.1, 0.6, 0.2, 0.1)
TAUS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0, 50.0)
SEED = 4  # its first four draws hit three different classes, so the rows are informative


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as a 120-dpi PNG and close `fig` (every figure of the project); returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_gumbel_pdf(path: Path, *, num_samples: int = 200_000, seed: int = SEED) -> Path:
    """Write the Gumbel pdf for several (loc, scale) with a histogram of standard draws.

    Args:
        path: Output PNG path.
        num_samples: Number of ``sample_gumbel`` draws in the histogram.
        seed: Generator seed.

    Returns:
        The written path.
    """
    import matplotlib.pyplot as plt

    draws = sample_gumbel(num_samples, generator=torch.Generator().manual_seed(seed))
    x = torch.linspace(-4.0, 10.0, 1000, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.hist(
        draws.numpy(),
        bins=120,
        range=(-4, 10),
        density=True,
        color="0.8",
        label=f"{num_samples:,} sample_gumbel draws (loc 0, scale 1)",
    )
    for loc, scale in PDF_PARAMS:
        ax.plot(x, gumbel_pdf(x, loc, scale), lw=2, label=f"pdf, loc={loc:g}, scale={scale:g}")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title("Gumbel(loc, scale) density: exp(-(z + exp(-z))) / scale, z = (x - loc) / scale")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    ax.set_xlim(-4, 10)
    return save_figure(fig, path)


def plot_gumbel_softmax_temperatures(
    path: Path,
    *,
    probs: Sequence[float] = PROBS,
    taus: Sequence[float] = TAUS,
    num_shown: int = 4,
    num_mean: int = 20_000,
    seed: int = SEED,
) -> Path:
    """Write Gumbel-Softmax samples of one categorical distribution at several temperatures.

    Each row is a temperature: ``num_shown`` individual samples as bar charts, then the
    mean of ``num_mean`` samples next to the target probabilities.  Every row reuses the
    same Gumbel noise, so a column shows one draw moving from one-hot to uniform as tau grows.

    Args:
        path: Output PNG path.
        probs: Class probabilities of the categorical distribution.
        taus: Temperatures, one row each.
        num_shown: Individual samples drawn per temperature.
        num_mean: Samples averaged for the expected sample.
        seed: Generator seed.

    Returns:
        The written path.
    """
    import matplotlib.pyplot as plt

    p = torch.tensor(probs, dtype=torch.float64)
    logits = p.log()  # (A,)
    classes = range(len(probs))
    ncols = num_shown + 1
    fig, axes = plt.subplots(len(taus), ncols, figsize=(2.0 * ncols, 1.45 * len(taus) + 0.9), sharex=True, sharey=True)
    for row, tau in enumerate(taus):
        rng = torch.Generator().manual_seed(seed)
        shown = gumbel_softmax(logits.expand(num_shown, -1), tau, generator=rng)  # (S, A)
        mean = gumbel_softmax(logits.expand(num_mean, -1), tau, generator=rng).mean(0)  # (A,)
        for col in range(num_shown):
            ax = axes[row, col]
            ax.bar(classes, shown[col].numpy(), color="tab:blue")
            if row == 0:
                ax.set_title(f"sample {col + 1} (same noise)", fontsize=9)
        ax = axes[row, -1]
        ax.bar(classes, mean.numpy(), color="tab:orange", label="mean of samples")
        ax.plot(classes, p.numpy(), "k_", ms=14, mew=2, label="target probs")
        if row == 0:
            ax.set_title(f"mean of {num_mean:,}", fontsize=9)
        axes[row, 0].set_ylabel(f"τ = {tau:g}\nweight")
    for ax in axes.flat:
        ax.set_ylim(0, 1.05)
        ax.axhline(1 / len(probs), color="0.6", lw=0.8, ls=":")
    for ax in axes[-1]:
        ax.set_xticks(list(classes))
        ax.set_xlabel("class")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"Gumbel-Softmax samples of Categorical({list(probs)}): one-hot at small τ, uniform (dotted 1/A) at large τ",
        fontsize=10,
    )
    return save_figure(fig, path)


@dataclass
class FiguresArgs:
    """Write the Gumbel pdf and Gumbel-Softmax temperature figures as PNGs."""

    out: Path = Path("docs/figures")
    """Output folder."""
    seed: int = SEED
    """Generator seed."""


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: write both figures and print their paths; 2 on bad input."""
    try:
        args, _ = parse(
            FiguresArgs, list(sys.argv[1:] if argv is None else argv), prog="python -m agent.gumbel_figures"
        )
        import matplotlib

        matplotlib.use("Agg")  # headless: never needs a display
        args.out.mkdir(parents=True, exist_ok=True)
        paths = [
            plot_gumbel_pdf(args.out / "gumbel_pdf.png", seed=args.seed),
            plot_gumbel_softmax_temperatures(args.out / "gumbel_softmax_temperatures.png", seed=args.seed),
        ]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
