"""Spectrograms of a few prepared examples, so a person can see what the model will be trained on."""
from __future__ import annotations

from pathlib import Path

from pipeline.audio.plots import plot_example
from pipeline.dataset.reader import iter_examples
from pipeline.publish import staged_dir


def plot_examples(prepared_dir: Path, plots_dir: Path, n_examples: int, sample_rate: int, frame_rate: int
                  ) -> list[Path]:
    """``example_<i>.png`` for the first ``n_examples`` eval examples, published as one folder."""
    names = []
    with staged_dir(plots_dir) as staging:
        for i, ex in enumerate(iter_examples(prepared_dir, "eval", limit=n_examples)):
            title = f"{ex['source']} @ {ex['offset_secs']:.1f} s (eval)"
            names.append(plot_example(staging / f"example_{i}.png", ex["audio"], sample_rate, ex["f0_hz"],
                                      ex["f0_confidence"], ex["loudness_db"], frame_rate, title).name)
    return [plots_dir / name for name in names]
