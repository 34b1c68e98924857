"""Loss curves as pictures: the logged values, their moving average and the learning rate, one panel each."""

from __future__ import annotations

from pathlib import Path


def smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start (the first point is itself)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def curve_panels(history: list[dict[str, float]], keys: tuple[str, ...] = ("loss",)) -> dict[str, list[tuple]]:
    """The panels a stage's plot shows: each logged key, then the learning rate; points as (step, value)."""
    panels = {k: [(h["step"], h[k]) for h in history if k in h] for k in (*keys, "learning_rate")}
    return {k: v for k, v in panels.items() if v}


def loss_curve_png(
    history: list[dict[str, float]], path: Path, title: str, keys: tuple[str, ...] = ("loss",)
) -> Path | None:
    """A PNG of the logged curves (loss, and for DPO reward accuracy and margin) and the learning rate: the raw
    values faint, an exponential moving average over them (from 10 points), so a long noisy run reads as a trend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curve_panels(history, keys)
    if not series or not any(k != "learning_rate" for k in series):
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items()):
        steps, values = [p[0] for p in points], [p[1] for p in points]
        if key == "learning_rate" or len(points) < 10:
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.5)
        else:
            ax.plot(steps, values, linewidth=0.8, alpha=0.35, label="logged")
            ax.plot(steps, smoothed(values), linewidth=1.8, label="smoothed (EMA 0.9)")
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
