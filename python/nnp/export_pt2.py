"""Compiled model files: ``torch.export`` + AOTInductor packages (``.nnp.pt2``), see docs/model_contract.md.

The potential is traced with its force/virial autograd unrolled into one forward graph (``make_fx``, the
way NequIP does it), exported with dynamic node and edge counts, and compiled ahead of time into a
``.pt2`` package that carries the same metadata strings as a TorchScript file. The compiled program
takes ``num_local`` as a 0-d int64 tensor and returns the outputs as a tuple in ``contract.OUTPUT_KEYS``
order. Packages are run, in Python as in LAMMPS, by the C++ evaluator (pair_nnp/backend_aoti.cpp), which
pads graphs smaller than ``MIN_NODES`` / ``MIN_EDGES``. GemNet (data-dependent triplet
counts) does not export; EGNN, GNS and PaiNN do.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import torch
from torch import Tensor, nn

from . import contract
from .errors import UserError
from .models.potential import Potential
from .nn.halo import halo as _halo  # noqa: F401  (registers nnp::halo before tracing and loading)

MIN_NODES, MIN_EDGES = contract.PT2_MIN_NODES, contract.PT2_MIN_EDGES
MAX_SIZE = 2**31 - 1
# example graph for tracing: sizes distinct from each other and from every weight dimension
_TRACE_NODES, _TRACE_EDGES = 7, 23


class CompileUnavailable(UserError):
    """AOTInductor cannot compile here (no working C++ compiler): the message says what is missing."""


def check_compiler() -> None:
    """Raise :class:`CompileUnavailable` when the C++ compiler AOTInductor calls is missing."""
    from torch._inductor import cpp_builder, exc

    try:
        compiler = cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        compiler = None
    if compiler is None or shutil.which(compiler) is None:
        raise CompileUnavailable(
            "exporting a .pt2 model needs a C++ compiler for AOTInductor and none was found: install g++ "
            "(or set CXX), or export TorchScript (--format torchscript)")


class ExportedPotential(nn.Module):
    """The contract's forward in export-friendly form: ``num_local`` as a tensor, outputs as a tuple."""

    def __init__(self, potential: Potential):
        super().__init__()
        self.potential = potential

    def forward(
        self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        local = torch.arange(species.shape[0], device=species.device) < num_local
        return self.potential.contract_outputs(species, edge_index, edge_vectors, local, False)


@contextlib.contextmanager
def _no_duck_shapes() -> Iterator[None]:
    """Keep equal-sized dims as separate symbols while tracing (no accidental node == edge guards)."""
    config = torch.fx.experimental._config
    previous = config.use_duck_shape
    config.use_duck_shape = False
    try:
        yield
    finally:
        config.use_duck_shape = previous


def example_inputs(num_species: int, cutoff: float, dtype: torch.dtype, device: str = "cpu") -> Tuple[Tensor, ...]:
    """A small random graph with ``_TRACE_NODES`` nodes and ``_TRACE_EDGES`` edges inside the cutoff."""
    generator = torch.Generator().manual_seed(0)
    species = torch.arange(_TRACE_NODES) % num_species
    edge_index = torch.randint(0, _TRACE_NODES, (2, _TRACE_EDGES), generator=generator)
    edge_index[1] = torch.where(edge_index[0] == edge_index[1], (edge_index[1] + 1) % _TRACE_NODES, edge_index[1])
    direction = torch.randn(_TRACE_EDGES, 3, generator=generator, dtype=torch.float64)
    length = cutoff * (0.3 + 0.6 * torch.rand(_TRACE_EDGES, 1, generator=generator, dtype=torch.float64))
    vectors = (direction / direction.norm(dim=1, keepdim=True) * length).to(dtype)
    inputs = species, edge_index, vectors, torch.tensor(_TRACE_NODES - 2)
    return tuple(x.to(device) for x in inputs)


def export_program(module: nn.Module, cutoff: float, num_species: int, dtype: torch.dtype, device: str = "cpu"):
    """``torch.export`` of ``ExportedPotential(module)`` with dynamic node and edge counts."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    wrapper = ExportedPotential(module)
    inputs = example_inputs(num_species, cutoff, dtype, device)
    try:
        with _no_duck_shapes():
            graph = make_fx(wrapper, tracing_mode="symbolic", _allow_non_fake_inputs=True,
                            _error_on_data_dependent_ops=True)(*[x.clone() for x in inputs])
    except GuardOnDataDependentSymNode as err:
        raise UserError(
            f"model kind {getattr(module, 'model_kind', '?')!r} cannot be exported as .pt2: its graph has "
            f"data-dependent shapes ({str(err).splitlines()[0]}); export it as TorchScript (.nnp.pt)") from None
    nodes = torch.export.Dim("num_nodes", min=MIN_NODES, max=MAX_SIZE)
    edges = torch.export.Dim("num_edges", min=MIN_EDGES, max=MAX_SIZE)
    shapes = ({0: nodes}, {1: edges}, {0: edges}, None)
    return torch.export.export(graph, inputs, dynamic_shapes=shapes, strict=False)


DEVICES = ("cpu", "cuda")


def check_device(device: str) -> None:
    """Raise :class:`UserError` unless a package can be compiled for ``device`` (cpu, or cuda with a GPU)."""
    if device not in DEVICES:
        raise UserError(f"a .pt2 package is compiled for cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("exporting a .pt2 package for cuda needs a CUDA GPU and a CUDA torch on this machine "
                        f"(torch {torch.__version__}, GPU visible: no): export on the GPU machine, or use --device cpu")


# A CPU package compiled with -march=native and this CPU's widest vectors (AVX-512 here) dies with an
# illegal instruction on a CPU without them; a portable one targets x86-64-v3 (AVX2 + FMA, 2013 on).
PORTABLE_X86 = {"cpp.march": "x86-64-v3", "cpp.simdlen": 256}


def portable_configs(device: str, portable: bool) -> Dict[str, Any]:
    """Inductor settings of a portable CPU package (none on other machines or devices)."""
    return PORTABLE_X86 if portable and device == "cpu" and platform.machine() in ("x86_64", "AMD64") else {}


def write_package(module: nn.Module, path: Path, metadata: Dict[str, str], dtype: torch.dtype,
                  device: str = "cpu", portable: bool = False) -> Path:
    """Export and AOT-compile ``module`` (a Potential in ``dtype``, eval mode) to the package ``path``.

    ``device``: ``cpu`` or ``cuda``; the package runs only on that device type (pair_style nnp picks it).
    ``portable``: on an x86-64 CPU, compile for x86-64-v3 (AVX2) rather than this machine (a bundled file).
    """
    check_device(device)
    check_compiler()
    module = module.to(device)
    program = export_program(module, float(module.cutoff), len(module.species), dtype, device)
    # written beside the target under its final name (the archive's folder is named after it), then moved
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        out = torch._inductor.aoti_compile_and_package(
            program, package_path=str(Path(tmp) / path.name),
            inductor_configs={"aot_inductor.metadata": dict(metadata), **portable_configs(device, portable)})
        Path(out).replace(path)
    return path


class CompiledModel:
    """A ``.pt2`` package called like a TorchScript model file: ``(..., num_local: int) -> dict`` of tensors.

    Runs the C++ evaluator of ``pair_style nnp`` (``nnp._evaluator.Evaluator``): one loader, one padding.
    Outputs come back on the inputs' device: per-node ones in the edge vectors' dtype, the energy and virial
    in float64 (as the package computes them); no autograd through them.
    """

    def __init__(self, evaluator: Any):
        self.evaluator = evaluator

    def node_features(self, *args: Any) -> Tensor:
        """Not compiled into a package: only the contract's forward is."""
        raise UserError("a .pt2 model package holds only the MD forward, not node_features: "
                        "use the TorchScript file (.nnp.pt) of the same model for this analysis")

    def __call__(self, species: Tensor, edge_index: Tensor, edge_vectors: Tensor, num_local: int) -> Dict[str, Tensor]:
        out = self.evaluator.evaluate(species.detach().cpu().numpy(), edge_index.detach().cpu().numpy(),
                                      edge_vectors.detach().cpu().double().numpy(), int(num_local))
        totals = ("energy", "virial")  # system sums are float64 in every model dtype (docs/model_contract.md)
        return {key: torch.as_tensor(out[key], dtype=torch.float64 if key in totals else edge_vectors.dtype,
                                     device=edge_vectors.device)
                for key in contract.OUTPUT_KEYS}
