// Python binding of the evaluator: nnp._evaluator.Evaluator (numpy in, numpy out).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "contract.h"
#include "deviation.h"
#include "evaluator.h"
#include "model_path.h"

namespace py = pybind11;

namespace {

py::array_t<double> to_numpy(const torch::Tensor &t) {
  std::vector<py::ssize_t> shape(t.sizes().begin(), t.sizes().end());
  py::array_t<double> out(shape);
  std::memcpy(out.mutable_data(), t.data_ptr<double>(), sizeof(double) * t.numel());
  return out;
}

py::dict evaluate(nnp::Evaluator &self, py::array_t<int64_t, py::array::c_style | py::array::forcecast> species,
                  py::array_t<int64_t, py::array::c_style | py::array::forcecast> edge_index,
                  py::array_t<double, py::array::c_style | py::array::forcecast> edge_vectors, int64_t num_local,
                  bool check_finite) {
  const int64_t n = species.size();
  if (edge_index.ndim() != 2 || edge_index.shape(0) != 2)
    throw py::value_error("edge_index must have shape (2, E)");
  const int64_t e = edge_index.shape(1);
  if (edge_vectors.ndim() != 2 || edge_vectors.shape(0) != e || edge_vectors.shape(1) != 3)
    throw py::value_error("edge_vectors must have shape (E, 3) with E = edge_index.shape[1]");
  if (num_local < 0 || num_local > n) throw py::value_error("num_local must be in [0, N]");
  const auto n_species = static_cast<int64_t>(self.info().species.size());
  for (int64_t k = 0; k < n; k++)
    if (species.data()[k] < 0 || species.data()[k] >= n_species)
      throw py::value_error("species index out of range for this model");
  for (int64_t k = 0; k < 2 * e; k++)
    if (edge_index.data()[k] < 0 || edge_index.data()[k] >= n) throw py::value_error("edge_index refers to a missing node");
  nnp::Result r;
  {
    py::gil_scoped_release release;
    r = self.evaluate(species.data(), n, edge_index.data(), edge_vectors.data(), e, num_local);
  }
  if (check_finite) {
    const int64_t bad = nnp::Evaluator::first_non_finite(r, num_local);
    if (bad >= 0)
      throw nnp::Error(bad < n ? "model returned NaN or infinite energy/force for node " + std::to_string(bad)
                               : std::string("model returned a NaN or infinite total energy or virial"));
  }
  using namespace nnp::contract;
  py::dict out;
  out[OUTPUT_KEYS[ENERGY]] = r.energy;
  out[OUTPUT_KEYS[ATOM_ENERGY]] = to_numpy(r.atom_energy);
  out[OUTPUT_KEYS[FORCES]] = to_numpy(r.forces);
  out[OUTPUT_KEYS[VIRIAL]] = to_numpy(r.virial);
  out[OUTPUT_KEYS[ATOM_VIRIAL]] = to_numpy(r.atom_virial);
  return out;
}

// forces: list of (N, 3) arrays, one per member; energies: total energies -> (eps_i (N,), devi_e)
py::tuple model_deviation(const std::vector<py::array_t<double, py::array::c_style | py::array::forcecast>> &forces,
                          const std::vector<double> &energies, double num_atoms, double relative_level) {
  if (forces.size() != energies.size()) throw py::value_error("one force array and one energy per member");
  std::vector<torch::Tensor> rows;
  for (const auto &f : forces) {
    if (f.ndim() != 2 || f.shape(1) != 3 || f.shape(0) != forces[0].shape(0))
      throw py::value_error("every member's forces must have the same shape (N, 3)");
    rows.push_back(torch::from_blob(const_cast<double *>(f.data()), {f.shape(0), 3}, torch::kFloat64));
  }
  torch::Tensor eps = nnp::force_deviation(torch::stack(rows, 0), relative_level).contiguous();
  return py::make_tuple(to_numpy(eps), nnp::energy_deviation(energies, num_atoms));
}

py::tuple virial_deviation(const std::vector<py::array_t<double, py::array::c_style | py::array::forcecast>> &virials,
                           double num_atoms, double relative_level) {
  std::vector<std::vector<double>> rows;
  for (const auto &v : virials) {
    if (v.size() != 9) throw py::value_error("every member's virial must have nine components (3, 3)");
    rows.emplace_back(v.data(), v.data() + 9);
  }
  const std::vector<double> eps = nnp::virial_deviation(rows, num_atoms, relative_level);
  const nnp::VirialSummary s = nnp::summarize_virial(eps);
  return py::make_tuple(py::array_t<double>(9, eps.data()), s.max, s.min, s.avg);
}

}  // namespace

PYBIND11_MODULE(_evaluator, m) {
  m.doc() = "The C++ evaluator of nnp model files (the code pair_style nnp runs).";
  py::register_exception<nnp::Error>(m, "ModelError", PyExc_ValueError);
  py::class_<nnp::Evaluator>(m, "Evaluator")
      .def(py::init<const std::string &, const std::string &>(), py::arg("path"), py::arg("device") = "cpu")
      .def_property_readonly("species", [](const nnp::Evaluator &e) { return e.info().species; })
      .def_property_readonly("cutoff", [](const nnp::Evaluator &e) { return e.info().cutoff; })
      .def_property_readonly("num_interactions", [](const nnp::Evaluator &e) { return e.info().num_interactions; })
      .def_property_readonly("dtype", [](const nnp::Evaluator &e) { return e.info().dtype; })
      .def_property_readonly("halo_per_layer", [](const nnp::Evaluator &e) { return e.info().halo_per_layer; })
      .def_property_readonly("receptive_hops", [](const nnp::Evaluator &e) { return e.info().receptive_hops; })
      .def_property_readonly("direct_forces", [](const nnp::Evaluator &e) { return e.info().direct_forces; })
      .def_property_readonly("metadata", [](const nnp::Evaluator &e) { return e.info().metadata; })
      .def_property_readonly("device", &nnp::Evaluator::device)
      .def_property_readonly("path", &nnp::Evaluator::path, "the model file that was loaded")
      .def("evaluate", &evaluate, py::arg("species"), py::arg("edge_index"), py::arg("edge_vectors"),
           py::arg("num_local"), py::arg("check_finite") = false,
           "Evaluate a graph (contract inputs); returns energy, atom_energy, forces, virial, atom_virial as float64\n"
           "numpy arrays. check_finite=True raises ModelError naming the first node with a NaN/inf output.");
  m.def(
      "check_metadata",
      [](const std::string &path, const std::map<std::string, std::string> &stored) {
        return nnp::read_model_info(path, nnp::MetadataMap(stored.begin(), stored.end())).metadata;
      },
      py::arg("path"), py::arg("metadata"),
      "Validate a model file's metadata strings (the check pair_style nnp makes); returns every contract key,\n"
      "version-1 gaps filled. Raises ModelError naming path, the problem and the fix.");
  m.def("resolve_model_path", &nnp::resolve_model_path, py::arg("name_or_path"),
        "The file itself, or a bundled model's file by name (the lookup pair_coeff does); ModelError if neither.");
  m.def("model_search_path", &nnp::model_search_path, "Directories searched for models given by name, in order.");
  m.def("model_deviation", &model_deviation, py::arg("member_forces"), py::arg("energies"), py::arg("num_atoms"),
        py::arg("relative_level") = -1.0,
        "Ensemble deviation (DeePMD definitions, pair_nnp/deviation.h): per-member (N, 3) forces and total\n"
        "energies -> (eps_i per atom, std over members of E / num_atoms); relative_level >= 0 divides eps_i\n"
        "by |<F_i>| + relative_level.");
  m.def("virial_deviation", &virial_deviation, py::arg("member_virials"), py::arg("num_atoms"),
        py::arg("relative_level") = -1.0,
        "Virial deviation (DeePMD): per-member (3, 3) virials -> (std over members of virial / num_atoms as 9\n"
        "values, their max, min and root mean square); relative_level >= 0 divides by |<virial>|/N + level.");
  m.def(
      "check_ensemble_member",
      [](const nnp::Evaluator &driver, const std::string &driver_path, const nnp::Evaluator &member,
         const std::string &member_path) {
        nnp::check_ensemble_member(driver.info(), driver_path, member.info(), member_path);
      },
      py::arg("driver"), py::arg("driver_path"), py::arg("member"), py::arg("member_path"),
      "Raise ModelError naming member_path when it cannot share the driver's graph (species, cutoff, units, halo).");
}
