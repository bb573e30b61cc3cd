"""The label lead (`data.lead`, frames): the target of frame t is the log at t + lead.

Demonstrations carry the driver's reaction delay; a model trained on them learns to copy
it and, in the loop, corrects late. Leading the labels by that delay teaches the
undelayed response to what the frame shows. Training, validation and evaluation read
their targets through `lead_rows`, so the three agree on what "the target" is.
"""

from __future__ import annotations

import numpy as np


def lead_rows(start: int, stop: int, lead: int, n: int, step: int = 1) -> slice | np.ndarray:
    """Rows of the target signal for frames [start, stop) taken every `step` rows
    (`data.strides`): `lead` rows later, clamped at the drive's last row `n - 1`."""
    if lead == 0:
        return slice(start, stop, step if step > 1 else None)
    return np.minimum(np.arange(start + lead, stop + lead, step), n - 1)
