"""The stability protocols: what a run is (system, temperature, timestep, length) and when it has collapsed.

MDsim's (Fu et al. 2023): molecules at 500 K, 0.5 fs, bond deviation > 0.5 Å; water at 300 K, 1 fs, RDF
error > 3.0 over a 1 ps window; both stop when the temperature leaves (0.1 K, 1e5 K). The criteria
themselves are in ``criteria``; the runners in ``stability`` and ``replicas``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Protocol:
    system: str  # "molecule" or "water"
    temperature: float
    timestep_fs: float
    time_ps: float
    bond_tolerance: float = 0.5  # Å (molecules)
    rdf_threshold: float = 3.0  # max over pairs of RDF MAE x 6 Å (water)
    rdf_window_ps: float = 1.0
    rdf_bins: int = 500
    rdf_r_max: float = 6.0
    t_min: float = 0.1
    t_max: float = 1.0e5
    check_every: int = 20  # steps between bond checks (molecules)
    sample_every: int = 100  # steps between stored frames (observables)
    damping_fs: float = 100.0  # Nosé–Hoover time constant
    nve_ps: float = 0.0  # > 0: after a stable NVT run, this long in NVE to measure the energy drift
    pairs: tuple = (("O", "O"), ("O", "H"), ("H", "H"))
    ensemble: tuple = ()  # extra model files: record the model deviation (pair_style nnp ensemble)
    deviation_every: int = 10  # steps between deviation samples (out_freq)
    deviation_threshold: float = 0.15  # eV/Å: the trust level whose first crossing is reported


def molecule_protocol(**overrides) -> Protocol:
    return Protocol(**{"system": "molecule", "temperature": 500.0, "timestep_fs": 0.5, "time_ps": 300.0, **overrides})


def water_protocol(**overrides) -> Protocol:
    return Protocol(**{"system": "water", "temperature": 300.0, "timestep_fs": 1.0, "time_ps": 500.0, **overrides})


PROTOCOLS = {"molecule": molecule_protocol, "water": water_protocol}


def stability_system(atoms) -> str:
    """The protocol that fits a structure: ``molecule`` (no periodic box: bond criterion) or ``water`` (a
    periodic box of H and O: RDF criterion). Other periodic systems have no protocol yet: an error."""
    from ..errors import UserError

    if not atoms.pbc.any():
        return "molecule"
    if set(atoms.get_chemical_symbols()) <= {"H", "O"}:
        return "water"
    raise UserError(f"no stability protocol for a periodic {atoms.get_chemical_formula()}: nnp stability knows "
                    "molecules (no periodic box, bond criterion) and water (RDF criterion)")
