"""The stability protocols: what a run is (system, temperature, timestep, length) and when it has collapsed.

MDsim's (Fu et al. 2023): molecules at 500 K, 0.5 fs, bond deviation > 0.5 Å; water at 300 K, 1 fs, RDF
error > 3.0 over a 1 ps window; both stop when the temperature leaves (0.1 K, 1e5 K). Any other periodic
system (a liquid, a crystal, an interface) gets water's criterion over every pair of its elements
(``periodic``; water's three pairs are exactly those of H2O). nnp adds one rule to the periodic protocols:
a window in which two atoms come closer than their element pair's closest distance in the reference by more
than ``contact_tolerance`` (0.5 Å, the molecules' bond tolerance) has collapsed, whatever its RDF error (a few
fused pairs among thousands barely move an RDF: RESULTS §14.4); ``contact_tolerance=None`` is MDsim's
criterion alone. The criteria themselves are in ``criteria``;
the runners in ``stability`` and ``replicas``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

PERIODIC_SYSTEMS = ("water", "periodic")  # the RDF criterion, in a periodic box


@dataclass
class Protocol:
    system: str  # "molecule", "water" or "periodic"
    temperature: float
    timestep_fs: float
    time_ps: float
    bond_tolerance: float = 0.5  # Å (molecules)
    rdf_threshold: float = 3.0  # max over pairs of RDF MAE x 6 Å (water)
    contact_tolerance: float | None = 0.5  # Å (periodic): closest approach allowed under the reference's; None: off
    rdf_window_ps: float = 1.0
    rdf_bins: int = 500
    rdf_r_max: float = 6.0
    t_min: float = 0.1
    t_max: float = 1.0e5
    check_every: int = 20  # steps between bond checks (molecules)
    sample_every: int = 100  # steps between stored frames (observables)
    damping_fs: float = 100.0  # Nosé–Hoover time constant
    nve_ps: float = 0.0  # > 0: after a stable NVT run, this long in NVE to measure the energy drift
    pairs: tuple = (("O", "O"), ("O", "H"), ("H", "H"))  # element pairs of the RDF criterion (periodic systems)
    ensemble: tuple = ()  # extra model files: record the model deviation (pair_style nnp ensemble)
    deviation_every: int = 10  # steps between deviation samples (out_freq)
    deviation_threshold: float = 0.15  # eV/Å: the trust level whose first crossing is reported
    zbl: tuple = ()  # (inner, outer) Å: the model overlaid with LAMMPS's ZBL core repulsion (lammps.deck.nnp_lines)

    @property
    def periodic(self) -> bool:
        """A periodic box judged by the RDF criterion (water, or any other periodic system)."""
        return self.system in PERIODIC_SYSTEMS


def molecule_protocol(**overrides) -> Protocol:
    return Protocol(**{"system": "molecule", "temperature": 500.0, "timestep_fs": 0.5, "time_ps": 300.0, **overrides})


def water_protocol(**overrides) -> Protocol:
    return Protocol(**{"system": "water", "temperature": 300.0, "timestep_fs": 1.0, "time_ps": 500.0, **overrides})


def periodic_protocol(pairs: Sequence[tuple[str, str]] = (), **overrides) -> Protocol:
    """Water's criterion and defaults for any periodic box: the RDF of each element pair in ``pairs`` against the
    reference's (none given: every pair of the reference's elements, :func:`element_pairs`, chosen by the run)."""
    return Protocol(**{"system": "periodic", "temperature": 300.0, "timestep_fs": 1.0, "time_ps": 500.0,
                       "pairs": tuple(tuple(p) for p in pairs), **overrides})


PROTOCOLS = {"molecule": molecule_protocol, "water": water_protocol, "periodic": periodic_protocol}


def element_pairs(frames) -> tuple[tuple[str, str], ...]:
    """Every pair of the elements in ``frames``, heaviest first (H2O: O-O, O-H, H-H)."""
    from ase.data import atomic_numbers

    elements = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()}, key=lambda s: -atomic_numbers[s])
    return tuple((a, b) for k, a in enumerate(elements) for b in elements[k:])


def stability_system(atoms) -> str:
    """The protocol that fits a structure: ``molecule`` (no periodic box: bond criterion), ``water`` (a
    periodic box of H and O: RDF criterion) or ``periodic`` (any other periodic box: the RDF criterion over
    its element pairs). A box periodic in some directions only (a slab, a wire) has no protocol: an error."""
    from ..errors import UserError

    if not atoms.pbc.any():
        return "molecule"
    if not atoms.pbc.all():
        raise UserError(f"no stability protocol for {atoms.get_chemical_formula()} periodic in some directions only "
                        f"(pbc {atoms.pbc.tolist()}): nnp stability knows molecules (no periodic direction) and "
                        "periodic boxes (all three)")
    if set(atoms.get_chemical_symbols()) <= {"H", "O"}:
        return "water"
    return "periodic"


def fit_windows(protocol: Protocol) -> Protocol:
    """The RDF criterion judges whole windows (LAMMPS averages each over its length): a periodic run shorter than
    one window is one window of its length; any other length must be a whole number of windows (an error names
    the lengths that are). Molecules: unchanged."""
    from dataclasses import replace

    from ..errors import UserError

    if not protocol.periodic:
        return protocol
    if protocol.time_ps < protocol.rdf_window_ps:
        return replace(protocol, rdf_window_ps=protocol.time_ps)
    steps = round(protocol.time_ps * 1000.0 / protocol.timestep_fs)
    window = round(protocol.rdf_window_ps * 1000.0 / protocol.timestep_fs)
    if steps % window:
        below = steps // window * protocol.rdf_window_ps
        raise UserError(f"a {protocol.system} run of {protocol.time_ps:g} ps is not a whole number of its "
                        f"{protocol.rdf_window_ps:g} ps RDF windows: run {below:g} or "
                        f"{below + protocol.rdf_window_ps:g} ps")
    return protocol


def check_system(system: str, frames) -> None:
    """Every frame fits the protocol ``system`` (``molecule``, ``water`` or ``periodic``): a periodic box never
    runs as a molecule in vacuum, nor a molecule as a box; a clear error names the first frame that does not."""
    from ..errors import UserError

    for k, atoms in enumerate(frames):
        fits = stability_system(atoms)  # a partly periodic box is an error there
        if fits != system and not (system == "periodic" and fits == "water"):
            raise UserError(f"frame {k} ({atoms.get_chemical_formula()}, pbc {atoms.pbc.tolist()}) is not a "
                            f"{system} system: give --system {fits} (molecule: no periodic box; water: a periodic "
                            "box of H and O; periodic: any other periodic box)")
