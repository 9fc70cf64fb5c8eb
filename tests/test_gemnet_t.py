"""GemNet-T as published: its index maps, bases and fitted scale factors (physics: test_physics.py)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy import special

from helpers import graph_inputs, small_model, water_box
from nnp.models.gemnet_t import fit_scale_factors, needs_scale_fit, scale_factors
from nnp.models.gemnet_t.basis import CircularBasis, spherical_bessel_roots
from nnp.models.gemnet_t.graph import build_triplets, reverse_edges


def small_periodic_box():
    """A cell smaller than the cutoff: one pair of atoms has several edges (periodic images)."""
    return Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0.1]], cell=np.eye(3) * 2.2, pbc=True)


def test_reverse_edges_pair_each_periodic_image_with_its_reverse():
    model = small_model(kind="gemnet_t")
    species, edge_index, vectors = graph_inputs(model, small_periodic_box())
    pairs = edge_index[0] * 3 + edge_index[1]
    assert int(torch.bincount(pairs).max()) > 1  # images make pairs repeat
    swap = reverse_edges(edge_index, vectors, 3)
    assert torch.equal(swap[swap], torch.arange(len(swap)))
    assert torch.equal(edge_index[:, swap], edge_index.flip(0))
    torch.testing.assert_close(vectors[swap], -vectors)


def test_a_missing_reverse_edge_is_an_error():
    model = small_model(kind="gemnet_t")
    species, edge_index, vectors = graph_inputs(model, water_box(seed=1))
    with pytest.raises(RuntimeError, match="full neighbour list"):
        reverse_edges(edge_index[:, 1:], vectors[1:], len(species))
    with pytest.raises(RuntimeError, match="full neighbour list"):
        model(species, edge_index[:, 1:], vectors[1:], len(species))


def test_triplets_are_pairs_of_distinct_edges_with_one_centre():
    model = small_model(kind="gemnet_t")
    species, edge_index, _ = graph_inputs(model, small_periodic_box())
    id_ca, id_ba, slot, slots = build_triplets(edge_index, 3)
    degree = torch.bincount(edge_index[0], minlength=3)
    assert len(id_ca) == int((degree[edge_index[0]] - 1).sum())
    assert torch.equal(edge_index[0, id_ca], edge_index[0, id_ba]) and bool((id_ca != id_ba).all())
    assert len(set(zip(id_ca.tolist(), slot.tolist()))) == len(id_ca) and int(slot.max()) < slots


def test_spherical_bessel_roots_and_normalisation():
    roots = spherical_bessel_roots(7, 6)
    for l in range(7):
        np.testing.assert_allclose(special.spherical_jn(l, roots[l].numpy()), 0.0, atol=1e-12)
        assert bool((roots[l, 1:] > roots[l, :-1]).all()) and float(roots[l, 0]) > (float(roots[l - 1, 0]) if l else 3.0)
    # radial part = envelope * norm_ln * j_l(z_ln d / c), and each norm_ln * j_l(z_ln d / c) has unit norm
    # on [0, c] with weight d^2 (the authors' normalisation)
    basis = CircularBasis(7, 6, cutoff=5.0, envelope_exponent=5).double()
    d = torch.linspace(1e-3, 5.0, 100001, dtype=torch.float64)
    bare = torch.stack([torch.from_numpy(special.spherical_jn(l, np.outer(d.numpy() / 5.0, roots[l].numpy())))
                        for l in range(7)], 1) * basis.norm  # (D, L, R)
    expected = bare * basis.envelope(d / 5.0)[:, None, None]
    far = d > 0.5  # the closed form of j_l cancels at small arguments
    np.testing.assert_allclose(basis.radial(d)[far].numpy(), expected[far].numpy(), rtol=1e-7, atol=1e-9)
    norms = torch.trapezoid(bare ** 2 * d[:, None, None] ** 2, d, dim=0)
    np.testing.assert_allclose(norms.numpy(), 1.0, rtol=1e-5)


def test_scale_fit_gives_unit_variance_ratio_on_the_batch():
    model = small_model(kind="gemnet_t")
    inputs = graph_inputs(model, water_box(seed=3))
    backbone = model.backbone
    for factor in scale_factors(backbone):  # forget the fit small_model did
        factor.scale.fill_(1.0)
        factor.fitted.fill_(False)
    assert needs_scale_fit(backbone)
    ratios = []
    hooks = [f.register_forward_hook(lambda m, i, o: ratios.append(float(o.var(0).mean() / i[0].var(0).mean())))
             for f in scale_factors(backbone)]
    with torch.no_grad():
        backbone(*inputs)
    assert max(abs(r - 1.0) for r in ratios) > 0.3  # unfitted: the ratios are far from one
    fitted = fit_scale_factors(backbone, lambda: backbone(*inputs))
    assert not needs_scale_fit(backbone) and len(fitted) == 3 * 3 + 4
    ratios.clear()
    with torch.no_grad():
        backbone(*inputs)
    for h in hooks:
        h.remove()
    np.testing.assert_allclose(ratios, 1.0, rtol=1e-10)
    assert "backbone.blocks.0.triplet.scale_rbf.scale" in model.state_dict()  # stored with the weights


def test_graphs_without_edges_or_triplets():
    model = small_model(kind="gemnet_t")
    scripted = torch.jit.script(model)
    for atoms in (Atoms("O", positions=[[0, 0, 0]]), Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]])):
        species, edge_index, vectors = graph_inputs(model, atoms)
        out = scripted(species, edge_index, vectors, len(atoms))
        assert torch.isfinite(out["forces"]).all()
        np.testing.assert_allclose(out["forces"].sum(0).detach().numpy(), 0.0, atol=1e-12)
    assert float(out["energy"].detach()) != pytest.approx(float(model.reference_energies.sum()))  # the pair interacts
