"""Random valid small molecules (RDKit) for the diverse pretraining set, no downloads.

A molecule is a random heavy-atom graph -- a random spanning tree plus a few ring closures, bond orders
raised where both valences allow -- sanitized by RDKit, saturated with hydrogens, neutral and
closed-shell (even electron count). Molecules are unique by canonical SMILES, excluded molecules
(the ten revised-MD17 molecules, held out as the benchmark) are never returned, every molecule embeds in 3D with
ETKDG, and the list depends only on the seed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# heavy elements, their (neutral, lowest) valence and how often they are drawn
VALENCE = {"C": 4, "N": 3, "O": 2, "F": 1, "S": 2, "Cl": 1}
WEIGHTS = {"C": 0.56, "N": 0.14, "O": 0.16, "F": 0.05, "S": 0.04, "Cl": 0.05}
ASPIRIN = "CC(=O)OC1=CC=CC=C1C(=O)O"
# The revised-MD17 molecules: the benchmark of the pretrained models, never in a pretraining set.
# Malonaldehyde is listed as both tautomers (rMD17's is the enol).
HELD_OUT = {
    "aspirin": ASPIRIN,
    "azobenzene": "c1ccc(cc1)N=Nc1ccccc1",
    "benzene": "c1ccccc1",
    "ethanol": "CCO",
    "malonaldehyde": "O=CCC=O",
    "malonaldehyde (enol)": "OC=CC=O",
    "naphthalene": "c1ccc2ccccc2c1",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "salicylic acid": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=c1cc[nH]c(=O)[nH]1",
}
MAX_RING_SIZE = 8

# cheap functional-group counts for the dataset card (SMARTS)
FUNCTIONAL_GROUPS = {
    "alcohol": "[CX4][OX2H]",
    "ether": "[#6][OX2][#6]",
    "carbonyl": "[CX3]=[OX1]",
    "carboxylic_acid": "[CX3](=O)[OX2H]",
    "ester": "[#6][CX3](=O)[OX2][#6]",
    "amine": "[NX3;!$(N-C=[O,N,S]);!$(N-a)]",
    "amide": "[NX3][CX3]=[OX1]",
    "nitrile": "[NX1]#[CX2]",
    "imine": "[CX3]=[NX2]",
    "alkene": "[CX3]=[CX3]",
    "alkyne": "[CX2]#[CX2]",
    "aromatic_6_ring": "a1aaaaa1",
    "thiol_or_thioether": "[SX2]",
    "halide": "[F,Cl]",
    "N-N or N-O or O-O": "[N,O]-[N,O]",
}


def canonical_smiles(smiles: str) -> str:
    """RDKit canonical SMILES (ValueError when RDKit cannot parse it)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    return Chem.MolToSmiles(mol)


@dataclass
class Enumeration:
    """The molecules drawn and what was rejected on the way (for the dataset card)."""

    smiles: list[str]
    attempts: int
    rejected: Counter = field(default_factory=Counter)
    excluded: dict[str, int] = field(default_factory=dict)  # canonical SMILES -> times drawn and dropped


HETERO_BOND_WEIGHT = 0.15  # relative chance of a bond between two heteroatoms (N-O, O-O, S-N, ...)


def _ring_core(rng: np.random.Generator, n_heavy: int) -> tuple[list[str], dict] | None:
    """Sometimes an aromatic core: benzene/pyridine-like 6-ring or furan/pyrrole/thiophene-like 5-ring."""
    if n_heavy >= 6 and rng.random() < 0.2:
        ring = ["N" if rng.random() < 0.15 else "C" for _ in range(6)]
        return ring, {(k, (k + 1) % 6) if k < 5 else (0, 5): 2 if k % 2 == 0 else 1 for k in range(6)}
    if n_heavy >= 5 and rng.random() < 0.1:
        ring = [str(rng.choice(["O", "N", "S"])), "C", "C", "C", "C"]
        return ring, {(0, 1): 1, (1, 2): 2, (2, 3): 1, (3, 4): 2, (0, 4): 1}
    return None


def _random_graph(rng: np.random.Generator, n_heavy: int, ring_closures: int) -> tuple[list[str], dict] | None:
    """Elements and bond orders {(i, j): order} of a random connected graph that respects valences.

    Halogens bond only to carbon; bonds between two other heteroatoms are drawn less often.
    """
    symbols = list(VALENCE)
    p = np.array([WEIGHTS[s] for s in symbols])
    core = _ring_core(rng, n_heavy)
    core_elements, bonds = core if core is not None else ([], {})
    rest = [symbols[k] for k in rng.choice(len(symbols), size=n_heavy - len(core_elements), p=p / p.sum())]
    # a monovalent atom can only be a leaf: attach the multivalent ones first
    rest.sort(key=lambda e: (VALENCE[e] == 1, rng.random()))
    elements = core_elements + rest
    if VALENCE[elements[0]] == 1 and n_heavy > 1:
        return None
    free = [VALENCE[e] for e in elements]
    neighbours: list[set[int]] = [set() for _ in range(n_heavy)]
    for (i, j), order in bonds.items():
        neighbours[i].add(j), neighbours[j].add(i)
        free[i] -= order
        free[j] -= order
    for i in range(len(core_elements) or 1, n_heavy):
        halogen = VALENCE[elements[i]] == 1
        parents = [j for j in range(i) if free[j] >= 1 and VALENCE[elements[j]] > 1
                   and (elements[j] == "C" or not halogen)]
        if not parents:
            return None
        hetero = elements[i] != "C"
        w = np.array([HETERO_BOND_WEIGHT if hetero and elements[j] != "C" else 1.0 for j in parents])
        j = int(rng.choice(parents, p=w / w.sum()))
        bonds[(j, i)] = 1
        neighbours[i].add(j), neighbours[j].add(i)
        free[i] -= 1
        free[j] -= 1
    for _ in range(ring_closures):
        open_atoms = [k for k in range(n_heavy) if free[k] >= 1 and VALENCE[elements[k]] > 1]
        if len(open_atoms) < 2:
            break
        i, j = sorted(int(k) for k in rng.choice(open_atoms, size=2, replace=False))
        size = _path_length(neighbours, i, j) + 1
        if j in neighbours[i] or not 3 <= size <= MAX_RING_SIZE:
            continue
        if elements[i] != "C" and elements[j] != "C" and rng.random() > HETERO_BOND_WEIGHT:
            continue
        bonds[(i, j)] = 1
        neighbours[i].add(j), neighbours[j].add(i)
        free[i] -= 1
        free[j] -= 1
    for (i, j) in list(bonds):  # unsaturation where both ends have valence left
        while bonds[(i, j)] < 3 and free[i] >= 1 and free[j] >= 1 and rng.random() < 0.3:
            bonds[(i, j)] += 1
            free[i] -= 1
            free[j] -= 1
    return elements, bonds


def _path_length(neighbours: list[set[int]], start: int, goal: int) -> int:
    """Bonds on the shortest path (breadth-first)."""
    seen, frontier, distance = {start}, [start], 0
    while frontier:
        if goal in frontier:
            return distance
        frontier = [n for k in frontier for n in neighbours[k] if n not in seen]
        seen.update(frontier)
        distance += 1
    return 10**9


def _to_smiles(elements: list[str], bonds: dict) -> tuple[str | None, str]:
    """Canonical SMILES of the graph with hydrogens implied, or (None, reason)."""
    from rdkit import Chem

    rw = Chem.RWMol()
    for e in elements:
        rw.AddAtom(Chem.Atom(e))
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    for (i, j), order in bonds.items():
        rw.AddBond(i, j, kinds[order])
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:
        return None, "sanitize"
    ring_info = mol.GetRingInfo()
    for bond in mol.GetBonds():  # strained: triple bonds in rings, multiple bonds in 3- and 4-rings
        if not bond.IsInRing():
            continue
        if bond.GetBondType() == Chem.BondType.TRIPLE:
            return None, "strained_ring"
        if bond.GetBondType() != Chem.BondType.SINGLE and ring_info.MinBondRingSize(bond.GetIdx()) < 5:
            return None, "strained_ring"
    for atom in mol.GetAtoms():
        if atom.IsInRing() and sum(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds()) > 1:
            return None, "strained_ring"
    with_h = Chem.AddHs(mol)
    if sum(a.GetAtomicNum() for a in with_h.GetAtoms()) % 2 or Chem.GetFormalCharge(with_h) != 0:
        return None, "open_shell_or_charged"
    return Chem.MolToSmiles(mol), ""


EMBED_CHECK_SEED = 0x5EED


def embeds(smiles: str, seed: int = EMBED_CHECK_SEED) -> bool:
    """Whether RDKit's ETKDG finds 3D coordinates (impossible bridged rings, for instance, do not embed)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    return AllChem.EmbedMolecule(Chem.AddHs(Chem.MolFromSmiles(smiles)), params) == 0


def held_out_reason(canonical: str) -> str:
    """Why a canonical SMILES is excluded: the held-out benchmark molecule it is, or 'excluded'."""
    names = [name for name, s in HELD_OUT.items() if canonical_smiles(s) == canonical]
    return f"{names[0]}: held-out benchmark molecule (revised MD17)" if names else "excluded"


def random_molecules(n: int, seed: int = 0, max_heavy_atoms: int = 9,
                     exclude: tuple[str, ...] = tuple(HELD_OUT.values()),
                     max_attempts: int | None = None) -> Enumeration:
    """``n`` distinct random molecules (canonical SMILES) with 1..``max_heavy_atoms`` heavy atoms."""
    if n < 1 or max_heavy_atoms < 1:
        raise ValueError(f"need n >= 1 and max_heavy_atoms >= 1, got n={n}, max_heavy_atoms={max_heavy_atoms}")
    excluded = {canonical_smiles(s): 0 for s in exclude}
    rng = np.random.default_rng(seed)
    sizes = np.arange(1, max_heavy_atoms + 1)
    size_p = sizes / sizes.sum()  # few distinct tiny molecules exist: draw larger ones more often
    found: list[str] = []
    seen: set[str] = set()
    rejected: Counter = Counter()
    attempts = 0
    limit = max_attempts if max_attempts is not None else 200 * n + 1000
    while len(found) < n:
        if attempts >= limit:
            raise RuntimeError(f"found only {len(found)} of {n} distinct molecules in {attempts} attempts "
                               f"(at most {max_heavy_atoms} heavy atoms); ask for fewer or allow larger molecules")
        attempts += 1
        n_heavy = int(rng.choice(sizes, p=size_p))
        graph = _random_graph(rng, n_heavy, ring_closures=int(rng.integers(0, 3)))
        if graph is None:
            rejected["no_tree"] += 1
            continue
        smiles, reason = _to_smiles(*graph)
        if smiles is None:
            rejected[reason] += 1
        elif smiles in excluded:
            excluded[smiles] += 1
        elif smiles in seen:
            rejected["duplicate"] += 1
        else:
            seen.add(smiles)
            if embeds(smiles):
                found.append(smiles)
            else:
                rejected["no_3d_embedding"] += 1
    return Enumeration(found, attempts, rejected, excluded)


def composition(smiles: list[str]) -> dict:
    """Heavy-atom histogram, elements, rings and functional groups of a list of molecules."""
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    patterns = {name: Chem.MolFromSmarts(s) for name, s in FUNCTIONAL_GROUPS.items()}
    heavy, rings, aromatic = Counter(), Counter(), 0
    groups: Counter = Counter()
    elements: Counter = Counter()
    atoms_per_molecule = []
    for s in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        heavy[mol.GetNumHeavyAtoms()] += 1
        atoms_per_molecule.append(mol.GetNumAtoms())
        rings[rdMolDescriptors.CalcNumRings(mol)] += 1
        aromatic += rdMolDescriptors.CalcNumAromaticRings(mol) > 0
        elements.update({a.GetSymbol() for a in mol.GetAtoms()})
        groups.update(name for name, p in patterns.items() if mol.HasSubstructMatch(p))
    return {
        "molecules": len(smiles),
        "heavy_atom_histogram": {str(k): heavy[k] for k in sorted(heavy)},
        "atoms_per_molecule": {"min": min(atoms_per_molecule), "mean": float(np.mean(atoms_per_molecule)),
                               "max": max(atoms_per_molecule)},
        "ring_count_histogram": {str(k): rings[k] for k in sorted(rings)},
        "molecules_with_aromatic_ring": int(aromatic),
        "molecules_containing_element": dict(sorted(elements.items())),
        "molecules_with_functional_group": {name: groups[name] for name in FUNCTIONAL_GROUPS},
    }
