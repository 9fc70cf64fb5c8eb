"""pair_style nnp under MPI: N ranks equal 1 rank to 1e-10 for every architecture.

EGNN and GNS exchange node features after every layer (contract v2 halo, ghosts one cutoff deep);
GemNet-T/dT evaluate a deep ghost shell (receptive_hops cutoffs). Each deck runs every case of one
rank count in turn (``clear`` between cases), so a whole architecture costs three LAMMPS launches.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from helpers import ALL_KINDS, small_model, triclinic_water, water_box
from lammps_helpers import run_deck
from nnp import contract
from nnp.export import export_model, load_exported
from nnp.lammps import write_lammps_data

pytestmark = pytest.mark.mpi

TOL = 1e-10
NKTV2P = 1.6021765e6  # metal: bar * Å^3 per eV


def one_molecule() -> Atoms:
    """One water molecule in a 16 Å box: most ranks own no atom."""
    return Atoms("OHH", positions=[[1, 1, 1], [1.96, 1, 1], [0.8, 1.9, 1]], cell=np.eye(3) * 16.0, pbc=True)


# name: (structure, processor grid for 2 ranks, for 4 ranks, commands to run)
MD_THEN_EDIT = """velocity all create 300 4 loop geom
fix nve all nve
timestep 0.0005
run 3
region gone sphere 3.0 3.0 3.0 1.6
delete_atoms region gone compress no
change_box all x scale 1.03 y final 0.0 9.5 remap
run 3"""
CASES = {
    "cubic": (lambda: water_box(n_side=3, seed=7), "2 1 1", "1 2 2", "run 0"),
    "slabs": (lambda: water_box(n_side=3, seed=8), "1 2 1", "4 1 1", "run 0"),
    "triclinic": (lambda: triclinic_water(11), "2 1 1", "2 2 1", "run 0"),
    "empty_rank": (one_molecule, "2 1 1", "2 2 1", "run 0"),
    # 2.6 Å (2 ranks) / 1.3 Å (4 ranks) subdomains against a 3 Å cutoff: ghosts arrive over several swaps
    "thin": (lambda: water_box(n_side=2, spacing=2.6, seed=9), "2 1 1", "4 1 1", "run 0"),
    "delete_and_change_box": (lambda: water_box(n_side=3, seed=10), "2 1 1", "1 2 2", MD_THEN_EDIT),
    # recursive-bisection subdomains (comm_style tiled): ghosts come from irregular neighbours, not swaps
    "tiled": (lambda: water_box(n_side=3, seed=12), "2 1 1", "2 2 1",
              "comm_style tiled\nbalance 1.0 rcb\nvelocity all create 300 4 loop geom\nfix nve all nve\n"
              "timestep 0.0005\nrun 5"),
}


def case_block(name: str, data: Path, model: Path, grid: str, commands: str, dump: Path,
               style: str = "pair_style nnp") -> str:
    processors = f"processors {grid}" if grid else ""
    voigt = " ".join(f"c_v[{k}]" for k in range(1, 7))
    centroid = " ".join(f"c_cs[{k}]" for k in range(1, 10))
    result = " ".join(f"$({q}:%.17g)" for q in ["pe", "vol"] + [f"c_v[{k}]" for k in range(1, 7)])
    return f"""clear
units metal
atom_style atomic
atom_modify map yes
boundary p p p
{processors}
read_data {data}
{style}
pair_coeff * * {model} H O
neighbor 1.0 bin
compute pe all pe/atom
compute s all stress/atom NULL pair
compute cs all centroid/stress/atom NULL pair
compute v all pressure NULL virial
thermo_style custom step pe vol {voigt}
dump d all custom 1 {dump} id fx fy fz c_pe c_s[1] c_s[2] c_s[3] c_s[4] c_s[5] c_s[6] {centroid}
dump_modify d format float %20.15g
{commands}
print "RESULT {name} {result}"
"""


def read_dump(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, columns after id) of the last frame, sorted by id."""
    text = path.read_text().split("ITEM: TIMESTEP")[-1]
    rows = text.split("ITEM: ATOMS")[1].strip().splitlines()[1:]
    data = np.array([[float(v) for v in row.split()] for row in rows])
    data = data[np.argsort(data[:, 0])]
    return data[:, 0].astype(int), data[:, 1:]


def run_cases(model: Path, tmp: Path, ranks: int, cases: list[str], style: str = "pair_style nnp") -> dict:
    """Every case on `ranks` ranks in one deck; returns {case: (totals, ids, per-atom columns)}."""
    blocks = []
    for name in cases:
        make, grid2, grid4, commands = CASES[name]
        data = tmp / f"{name}.data"
        if not data.exists():
            write_lammps_data(make(), data, ["H", "O"])
        grid = {1: "", 2: grid2, 4: grid4}[ranks]
        blocks.append(case_block(name, data, model, grid, commands, tmp / f"{name}.{ranks}.dump", style))
    done = run_deck("\n".join(blocks), tmp, ranks, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {}
    for name in cases:
        values = re.search(rf"^RESULT {name} (.*)$", done.stdout, flags=re.M).group(1).split()
        pe, vol, *pressure = (float(v) for v in values)
        ids, columns = read_dump(tmp / f"{name}.{ranks}.dump")
        totals = {"energy": pe, "virial": np.array(pressure) * vol / NKTV2P}
        per_atom = {"forces": columns[:, 0:3], "atom_energy": columns[:, 3], "atom_virial": -columns[:, 4:10] / NKTV2P,
                    "centroid_virial": -columns[:, 10:19] / NKTV2P}
        results[name] = (totals, ids, per_atom)
    results["stdout"] = done.stdout
    return results


def assert_same(reference: dict, other: dict, cases: list[str], label: str) -> None:
    for name in cases:
        (t1, ids1, a1), (t2, ids2, a2) = reference[name], other[name]
        assert np.array_equal(ids1, ids2), f"{label} {name}: different atoms"
        assert abs(t2["energy"] - t1["energy"]) < TOL, f"{label} {name}: energy {t2['energy']} vs {t1['energy']}"
        np.testing.assert_allclose(t2["virial"], t1["virial"], atol=TOL, rtol=0, err_msg=f"{label} {name} virial")
        for key in ("forces", "atom_energy", "atom_virial", "centroid_virial"):
            np.testing.assert_allclose(a2[key], a1[key], atol=TOL, rtol=0, err_msg=f"{label} {name} {key}")


def model_for(kind: str, tmp: Path) -> Path:
    """3 layers (2 exchanges) for the halo models; GemNet's deep shell is (2L + 1) cutoffs deep, so it gets
    1 block and a 2.5 Å cutoff to keep the 4-rank runs affordable (3 hops: the shell is 8.5 Å)."""
    if kind.startswith("gemnet"):
        return export_model(small_model(kind=kind, cutoff=2.5, layers=1, hidden=8), tmp / f"{kind}.nnp.pt")
    return export_model(small_model(kind=kind, cutoff=3.0, layers=3, hidden=8), tmp / f"{kind}.nnp.pt")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_two_and_four_ranks_equal_one_rank(tmp_path, kind):
    model = model_for(kind, tmp_path)
    cases = list(CASES)
    serial = run_cases(model, tmp_path, 1, cases)
    expected_mode = "per-layer halo exchange" if kind in ("egnn", "gns", "painn") else "deep ghost shell"
    for ranks in (2, 4):
        parallel = run_cases(model, tmp_path, ranks, cases)
        assert expected_mode in parallel["stdout"]
        assert_same(serial, parallel, cases, f"{kind} {ranks} ranks")
    # the edit case really deleted atoms and changed the box
    assert len(serial["delete_and_change_box"][1]) < len(serial["cubic"][1])  # atoms were deleted


def version_1_copy(model: Path, path: Path) -> Path:
    """The same TorchScript code saved with version-1 metadata (no halo keys)."""
    module, meta = load_exported(model)
    meta = {k: v for k, v in meta.items() if k not in contract.METADATA_KEYS_SINCE_V2}
    meta["format_version"] = "1"
    torch.jit.save(module, str(path), _extra_files=meta)
    return path


def test_version_1_file_runs_with_the_deep_shell(tmp_path):
    v1 = version_1_copy(model_for("egnn", tmp_path), tmp_path / "v1.nnp.pt")
    cases = ["cubic", "thin"]
    serial, parallel = run_cases(v1, tmp_path, 1, cases), run_cases(v1, tmp_path, 2, cases)
    assert "deep ghost shell" in parallel["stdout"]
    assert_same(serial, parallel, cases, "version 1, 2 ranks")


def test_halo_keeps_the_ghost_shell_one_cutoff_deep(tmp_path):
    """Per-layer exchange: ghosts within cutoff + skin only; the deep shell of the same model has more."""
    model = model_for("egnn", tmp_path)
    deep = tmp_path / "deep.nnp.pt"
    module, meta = load_exported(model)
    torch.jit.save(module, str(deep), _extra_files=dict(meta, halo=contract.HALO_NONE))
    ghosts = {}
    for name, path in (("halo", model), ("deep", deep)):
        out = run_cases(path, tmp_path, 2, ["cubic"])["stdout"]
        ghosts[name] = float(re.search(r"ghost nodes ([\d.]+)", out).group(1))
    assert 0 < ghosts["halo"] < ghosts["deep"] / 2


def test_a_model_that_skips_the_halo_calls_is_wrong_on_several_ranks(tmp_path):
    """Teeth: a file that declares per_layer but never calls nnp::halo (the reference model of
    tests/lammps_models.py, 3 layers) gets ghosts one cutoff deep with stale features, and 2 ranks
    no longer equal 1 rank. The same code declared honestly (halo none) is exact."""
    from lammps_models import write_model

    v2 = {"format_version": "2", "receptive_hops": "3"}
    liar = write_model(tmp_path / "liar.nnp.pt", meta={**v2, "halo": contract.HALO_PER_LAYER})
    honest = write_model(tmp_path / "honest.nnp.pt", meta={**v2, "halo": contract.HALO_NONE})
    cases = ["cubic"]
    serial = run_cases(honest, tmp_path, 1, cases)
    assert_same(serial, run_cases(honest, tmp_path, 2, cases), cases, "honest")
    wrong = run_cases(liar, tmp_path, 2, cases)
    assert np.abs(wrong["cubic"][2]["forces"] - serial["cubic"][2]["forces"]).max() > 1e-6


SERVED = "the model runs on a helper thread, its halo exchanges (MPI) on this one"


def test_exchanges_served_from_the_lammps_thread_equal_one_rank(tmp_path, monkeypatch):
    """The path every GPU run takes (pair_nnp/halo.h run_with_exchanger), forced on the CPU: the model on a
    helper thread, every nnp::halo / nnp::halo_reverse handed back to the LAMMPS thread for MPI (the pair
    style refuses an exchange from any other thread). 2 ranks still equal 1 rank."""
    model = model_for("egnn", tmp_path)
    cases = ["cubic", "empty_rank", "thin", "delete_and_change_box"]
    serial = run_cases(model, tmp_path, 1, cases, "pair_style nnp device cpu")
    monkeypatch.setenv("NNP_HALO_SERVE", "1")
    parallel = run_cases(model, tmp_path, 2, cases, "pair_style nnp device cpu")
    assert SERVED in parallel["stdout"] and "per-layer halo exchange" in parallel["stdout"]
    assert_same(serial, parallel, cases, "served exchanges, 2 ranks")


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["egnn", "gemnet_t"])
def test_two_ranks_on_one_gpu_equal_one_rank(tmp_path, kind):
    """CUDA: autograd runs the halo's backward on its device thread; the exchanges must still reach MPI
    from the LAMMPS thread (EGNN, per-layer halo) and 2 ranks sharing one GPU equal 1 rank; GemNet-T
    (deep ghost shell) too. Both equal the CPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model = model_for(kind, tmp_path)
    cases = ["cubic", "empty_rank", "thin"]
    cpu = run_cases(model, tmp_path, 1, cases, "pair_style nnp device cpu")
    serial = run_cases(model, tmp_path, 1, cases, "pair_style nnp device cuda")
    parallel = run_cases(model, tmp_path, 2, cases, "pair_style nnp device cuda")
    assert "on cuda:0" in parallel["stdout"]
    if kind == "egnn":
        assert SERVED in parallel["stdout"]
    assert_same(serial, parallel, cases, f"{kind} cuda 2 ranks")
    assert_same(cpu, serial, cases, f"{kind} cuda vs cpu")
