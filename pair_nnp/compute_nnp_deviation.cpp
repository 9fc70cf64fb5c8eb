#include "compute_nnp_deviation.h"

#include <string>

#include "atom.h"
#include "ensemble.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "pair_nnp.h"
#include "update.h"

using namespace LAMMPS_NS;

ComputeNNPDeviation::ComputeNNPDeviation(LAMMPS *lmp, int narg, char **arg) : Compute(lmp, narg, arg) {
  if (narg != 3) error->all(FLERR, "compute nnp/deviation takes no arguments: compute ID group nnp/deviation");
  vector_flag = 1;
  size_vector = 7;
  extvector = 0;
  peratom_flag = 1;
  size_peratom_cols = 0;
  vector = new double[size_vector]();
}

ComputeNNPDeviation::~ComputeNNPDeviation() {
  delete[] vector;
  memory->destroy(values);
}

void ComputeNNPDeviation::init() {
  pair = dynamic_cast<PairNNP *>(force->pair_match("nnp", 1));
  if (!pair || !pair->ensemble())
    error->all(FLERR, "compute nnp/deviation needs pair_style nnp with an ensemble: "
                      "pair_style nnp ensemble m2.nnp.pt m3.nnp.pt out_freq N");
}

const DeviationValues &ComputeNNPDeviation::current(const char *what) {
  const NNPEnsemble *ensemble = pair->ensemble();
  const DeviationValues &last = ensemble->last();
  if (last.step != update->ntimestep)
    error->all(FLERR, "compute nnp/deviation ({}) invoked at step {}, but pair_style nnp measured the deviation "
                      "{}: it does so every out_freq = {} steps only; make the interval of the fix halt, thermo, "
                      "dump or variable that uses it a multiple of out_freq",
               what, update->ntimestep,
               last.step < 0 ? std::string("on no step yet") : "last at step " + std::to_string(last.step),
               ensemble->out_freq());
  return last;
}

void ComputeNNPDeviation::compute_vector() {
  invoked_vector = update->ntimestep;
  const DeviationValues &last = current("global vector");
  vector[0] = last.max_f;
  vector[1] = last.min_f;
  vector[2] = last.avg_f;
  vector[3] = last.devi_e;
  vector[4] = last.max_v;
  vector[5] = last.min_v;
  vector[6] = last.avg_v;
}

void ComputeNNPDeviation::compute_peratom() {
  invoked_peratom = update->ntimestep;
  const DeviationValues &last = current("per-atom vector");
  if (atom->nmax > nmax) {
    memory->destroy(values);
    nmax = atom->nmax;
    memory->create(values, nmax, "nnp/deviation:values");
  }
  vector_atom = values;
  const int nlocal = atom->nlocal;
  if (static_cast<int>(last.atom.size()) != nlocal)
    error->one(FLERR, "compute nnp/deviation: atoms changed since pair_style nnp measured the deviation");
  for (int i = 0; i < nlocal; i++) values[i] = (atom->mask[i] & groupbit) ? last.atom[i] : 0.0;
}

double ComputeNNPDeviation::memory_usage() { return static_cast<double>(nmax) * sizeof(double); }
