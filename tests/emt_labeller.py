"""A cheap reference method for active-learning tests: ASE's EMT (Cu), optionally slowed down so that a
test can kill the loop while it labels. It is the real EMT, not a stand-in: it also fails for real on
elements EMT does not know (e.g. Fe), which is how the tests make the labeller fail."""

from __future__ import annotations

import time

from ase.calculators.emt import EMT


class SlowEMT(EMT):
    def __init__(self, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def calculate(self, *args, **kwargs):
        time.sleep(self.delay)
        super().calculate(*args, **kwargs)


class WornEMT(SlowEMT):
    """EMT that fails every calculation after its first ``lifetime``: a calculator whose state between
    frames goes bad (as tblite's, which starts each SCF from the previous frame's wavefunction)."""

    def __init__(self, lifetime: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.lifetime, self.calls = lifetime, 0

    def calculate(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.lifetime:
            raise RuntimeError("SCF not converged (worn calculator state)")
        super().calculate(*args, **kwargs)
