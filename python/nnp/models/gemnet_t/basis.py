"""GemNet's bases: the radial Bessel basis of every edge and the circular (2D Fourier-Bessel) basis of triplets.

The circular basis of a triplet (edges ``e = a->c`` and ``f = a->b`` sharing atom ``a``) is
``j_l(z_ln d_e / c) * Y_l0(angle_cab)`` times the envelope: spherical Bessel functions of order ``l``
scaled by their own ``n``-th root ``z_ln`` (a different radial family per angular order), and real
spherical harmonics with ``m = 0``. It is stored separably, as GemNet's efficient variant does: a radial
part per edge ``(E, L, R)`` and an angular part per triplet ``(T, L)``.
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import Tensor, nn

from ...nn.angular import legendre
from ...nn.radial import BesselBasis, PolynomialEnvelope


def _rayleigh_coefficients(l: int) -> tuple[List[float], List[float]]:
    """Coefficients of ``j_l(x) = (sin(x - l pi/2) P(1/x) + cos(x - l pi/2) Q(1/x)) / x`` (powers of 1/(2x))."""
    f = math.factorial
    p = [(-1) ** k * f(l + 2 * k) / (f(2 * k) * f(l - 2 * k)) for k in range(l // 2 + 1)]
    q = [(-1) ** k * f(l + 2 * k + 1) / (f(2 * k + 1) * f(l - 2 * k - 1)) for k in range((l - 1) // 2 + 1)] if l else []
    return p, q


def spherical_jn(l: int, x: float) -> float:
    """Spherical Bessel function of the first kind, ``j_l(x)``, for ``x > 0`` (closed form)."""
    p, q = _rayleigh_coefficients(l)
    u = 1.0 / (2.0 * x)
    even = sum(c * u ** (2 * k) for k, c in enumerate(p))
    odd = sum(c * u ** (2 * k + 1) for k, c in enumerate(q))
    phase = x - 0.5 * l * math.pi
    return (math.sin(phase) * even + math.cos(phase) * odd) / x


def _bisect(l: int, lo: float, hi: float) -> float:
    f_lo = spherical_jn(l, lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f_mid = spherical_jn(l, mid)
        if (f_mid < 0) == (f_lo < 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
        if hi - lo < 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def spherical_bessel_roots(num_orders: int, num_roots: int) -> Tensor:
    """``z_ln``: the first ``num_roots`` positive roots of ``j_l`` for ``l < num_orders`` (float64).

    Roots of ``j_l`` interlace those of ``j_{l-1}``, so each is bracketed by two consecutive roots of the
    previous order (starting from ``j_0``'s roots ``n pi``).
    """
    count = num_roots + num_orders - 1
    previous = [math.pi * (n + 1) for n in range(count)]
    roots = [previous[:num_roots]]
    for l in range(1, num_orders):
        current = [_bisect(l, previous[k], previous[k + 1]) for k in range(count - l)]
        roots.append(current[:num_roots])
        previous = current
    return torch.tensor(roots, dtype=torch.float64)


class RadialBasis(nn.Module):
    """Edge basis ``u(d/c) sqrt(2/c) sin(f_n d/c) / d`` with trainable ``f_n`` (init ``n pi``): (E,) -> (E, R)."""

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5):
        super().__init__()
        self.bessel = BesselBasis(cutoff, num_radial, trainable=True)
        self.envelope = PolynomialEnvelope(cutoff, envelope_exponent)

    def forward(self, distance: Tensor) -> Tensor:
        return self.bessel(distance) * self.envelope(distance).unsqueeze(-1)


class CircularBasis(nn.Module):
    """Separable triplet basis: radial ``(E, L, R)`` per edge and angular ``Y_l0`` ``(T, L)`` per triplet."""

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int = 5):
        super().__init__()
        self.num_spherical = num_spherical
        self.cutoff = float(cutoff)
        self.envelope = PolynomialEnvelope(1.0, envelope_exponent)  # on d / c
        roots = spherical_bessel_roots(num_spherical, num_radial)  # (L, R)
        norm = torch.tensor([[math.sqrt(2.0) / abs(spherical_jn(l + 1, float(z))) for z in roots[l]]
                             for l in range(num_spherical)], dtype=torch.float64)
        self.register_buffer("roots", roots)
        self.register_buffer("norm", norm * self.cutoff ** -1.5)
        # j_l(x) = (sin(x - l pi/2) sum_j A_lj u^j + cos(x - l pi/2) sum_j B_lj u^j) / x, u = 1/(2x)
        sin_coef = torch.zeros(num_spherical, num_spherical, dtype=torch.float64)
        cos_coef = torch.zeros(num_spherical, num_spherical, dtype=torch.float64)
        for l in range(num_spherical):
            p, q = _rayleigh_coefficients(l)
            for k, c in enumerate(p):
                sin_coef[l, 2 * k] = c
            for k, c in enumerate(q):
                cos_coef[l, 2 * k + 1] = c
        self.register_buffer("sin_coef", sin_coef)
        self.register_buffer("cos_coef", cos_coef)
        self.register_buffer("orders", torch.arange(num_spherical, dtype=torch.float64))

    def radial(self, distance: Tensor) -> Tensor:
        """``u(d/c) norm_ln j_l(z_ln d/c)`` (E, L, R), evaluated in float64 (the closed form of ``j_l``
        cancels strongly at small arguments) and returned in the input dtype."""
        f64 = torch.float64
        x_scaled = distance.to(f64) / self.cutoff  # (E,)
        x = x_scaled[:, None, None] * self.roots.to(f64)  # (E, L, R)
        u = 0.5 / x
        powers = torch.stack([u.pow(j) for j in range(self.num_spherical)], -1)  # (E, L, R, J)
        even = (powers * self.sin_coef.to(f64)[:, None, :]).sum(-1)
        odd = (powers * self.cos_coef.to(f64)[:, None, :]).sum(-1)
        phase = x - 0.5 * math.pi * self.orders.to(f64)[:, None]
        bessel = (torch.sin(phase) * even + torch.cos(phase) * odd) / x  # j_l(z_ln d / c)
        rbf = bessel * self.norm.to(f64) * self.envelope(x_scaled)[:, None, None]  # (E, L, R)
        return rbf.to(distance.dtype)

    def angular(self, cosine: Tensor) -> Tensor:
        """``Y_l0`` of the triplet angles (T, L) from their cosines."""
        sph_norm = torch.sqrt((2.0 * self.orders.to(torch.float64) + 1.0) / (4.0 * math.pi))  # exact integers
        return legendre(cosine, self.num_spherical) * sph_norm.to(cosine.dtype)
