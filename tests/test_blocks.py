"""Shared building blocks: envelope smoothness, radial bases, angular basis, triplets."""

import numpy as np
import torch

from nnp.models.gemnet import build_triplets
from nnp.nn import BesselBasis, GaussianBasis, PolynomialEnvelope
from nnp.nn.angular import legendre


def test_envelope_is_one_at_zero_and_vanishes_smoothly_at_cutoff():
    env = PolynomialEnvelope(5.0)
    d = torch.tensor([0.0, 4.999999, 5.0, 6.0], dtype=torch.float64, requires_grad=True)
    u = env(d)
    (g,) = torch.autograd.grad(u.sum(), d, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), d)
    u, g = u.detach(), g.detach()
    assert float(u[0]) == 1.0 and float(u[2]) == 0.0 and float(u[3]) == 0.0
    assert abs(float(u[1])) < 1e-12 and abs(float(g[1])) < 1e-8 and abs(float(h[1])) < 1e-4


def test_radial_bases_shapes_and_values():
    d = torch.linspace(0.5, 5.0, 7, dtype=torch.float64)
    bessel = BesselBasis(5.0, 6)(d)
    expected = np.sqrt(2 / 5.0) * np.sin(np.outer(d.numpy(), np.arange(1, 7)) * np.pi / 5.0) / d.numpy()[:, None]
    np.testing.assert_allclose(bessel.detach().numpy(), expected, atol=1e-6)
    gauss = GaussianBasis(5.0, 11)(torch.tensor([2.5], dtype=torch.float64))
    assert gauss.shape == (1, 11) and float(gauss[0, 5]) == 1.0


def test_legendre_matches_numpy():
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    ours = legendre(x, 7).numpy()
    for l in range(7):
        np.testing.assert_allclose(ours[:, l], np.polynomial.legendre.Legendre.basis(l)(x.numpy()), atol=1e-12)


def test_triplets_of_a_triangle_and_of_periodic_self_images():
    # triangle 0-1-2, all edges both ways: each directed edge (i, j) has one partner (j, k), k != i
    edge_index = torch.tensor([[0, 1, 0, 2, 1, 2], [1, 0, 2, 0, 2, 1]])
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1.0, 0]], dtype=torch.float64)
    vectors = pos[edge_index[1]] - pos[edge_index[0]]
    idx_ji, idx_kj, _, _ = build_triplets(edge_index, vectors, 3)
    assert len(idx_ji) == 6
    for e_ji, e_kj in zip(idx_ji.tolist(), idx_kj.tolist()):
        assert edge_index[0, e_kj] == edge_index[1, e_ji] and edge_index[1, e_kj] != edge_index[0, e_ji]
    # one atom and its two periodic images along x: the back edge is excluded, the other image is kept
    edge_index = torch.tensor([[0, 0], [0, 0]])
    vectors = torch.tensor([[2.0, 0, 0], [-2.0, 0, 0]], dtype=torch.float64)
    idx_ji, idx_kj, _, _ = build_triplets(edge_index, vectors, 1)
    assert sorted(zip(idx_ji.tolist(), idx_kj.tolist())) == [(0, 0), (1, 1)]
