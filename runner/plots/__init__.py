"""Figures of a sweep's results (matplotlib on an Agg canvas: no global backend state).

* :func:`plot_dose_response`: SSIM, PSNR (dB) and FRC50 (pixels) of amplitude and phase against
  the dose (photons per pattern, log), and the final training loss per loss function. Colour:
  N / gridsize; line style and marker: loss; dashed: the constant-image baseline of that colour;
  ``x`` on the bottom edge: an arm failed, timed out or crashed at that dose (the line has a
  gap there when no arm of the point is ok); error bars: std over seeds when there are several.
* :func:`plot_reconstructions`: ground truth and reconstructed amplitude/phase of every
  N / gridsize / loss (lowest seed) and dose, each titled with its scores, with colour bars.
* :func:`plot_training_curves`: training and validation loss against epoch, one panel per
  loss and N / gridsize, colour by dose.

Each figure has one legend, outside the data, and a footnote naming the sweep, its epochs,
training size and seeds (from the table's columns, else ``sweep.toml``, else the defaults).

Modules: :mod:`.dose_response`, :mod:`.reconstructions`, :mod:`.training_curves` (one figure
each) and :mod:`.common` (the figure, legend, log axis and footnote they share).
"""

from __future__ import annotations

from .dose_response import dose_response_figure, plot_dose_response
from .reconstructions import plot_reconstructions, reconstructions_figure
from .training_curves import load_history, plot_training_curves, training_curves_figure

__all__ = ["plot_dose_response", "plot_reconstructions", "plot_training_curves",
           "dose_response_figure", "reconstructions_figure", "training_curves_figure",
           "load_history"]
