# What nnp's C++ must agree on with the LAMMPS it is compiled against, for both ways of building for a user's
# LAMMPS: the plugin (foreign_lammps.cmake) and nnp compiled into LAMMPS (nnp_in_lammps.cmake).
#   nnp_lammps_defines(<LAMMPS src dir> <its LAMMPS_SIZES> <out variable>)
# refuses integer sizes other than smallbig and sets <out> to the compile definitions nnp needs there:
# NNP_LAMMPS_LEGACY_API for LAMMPS before 2022 (no Neighbor::add_request; pair_nnp/lammps_compat.h).
function(nnp_lammps_defines src sizes out)
  string(TOLOWER "${sizes}" lower)
  if(lower AND NOT lower STREQUAL "smallbig")
    message(FATAL_ERROR "nnp: that LAMMPS uses LAMMPS_SIZES=${sizes} (tagint and bigint sizes); nnp is built and "
                        "tested with smallbig, the default: configure LAMMPS with -D LAMMPS_SIZES=smallbig")
  endif()
  set(defines "")
  file(STRINGS "${src}/neighbor.h" new_api REGEX "add_request")
  if(NOT new_api)
    list(APPEND defines NNP_LAMMPS_LEGACY_API)
  endif()
  set(${out} ${defines} PARENT_SCOPE)
endfunction()
