# pair_style nnp compiled into LAMMPS by LAMMPS's own CMake (no plugin): scripts/build_into_lammps.sh passes
#   -D CMAKE_PROJECT_INCLUDE=<nnp>/cmake/nnp_in_lammps.cmake -D NNP_DIR=<nnp> -D NNP_PYTHON=<python with torch>
# to a configure of <lammps>/cmake. The script has put thin style headers (pair_nnp_style.h, ...) into
# <lammps>/src, so LAMMPS's own style registration finds pair nnp, compute bond/deviation, compute
# nnp/deviation and fix nvt/mdsim; this file adds nnp's sources, libtorch (the torch wheel of NNP_PYTHON)
# and the checks once LAMMPS's own targets exist (a deferred call at the end of LAMMPS's CMakeLists.txt).
cmake_minimum_required(VERSION 3.19)
if(NOT NNP_DIR OR NOT EXISTS "${NNP_DIR}/pair_nnp/pair_nnp.cpp")
  message(FATAL_ERROR "nnp: set -D NNP_DIR=<the nnp checkout> (it holds pair_nnp/)")
endif()
if(NOT NNP_PYTHON)
  message(FATAL_ERROR "nnp: set -D NNP_PYTHON=<a python with torch> (libtorch comes from its torch wheel)")
endif()

include("${CMAKE_CURRENT_LIST_DIR}/nnp_lammps_api.cmake")
include("${CMAKE_CURRENT_LIST_DIR}/nnp_torch_version.cmake")

function(nnp_add_to_lammps)
  if(NOT TARGET lammps)
    message(FATAL_ERROR "nnp: no 'lammps' target: CMAKE_PROJECT_INCLUDE must be given to a configure of <lammps>/cmake")
  endif()
  # nnp's evaluator, backends, halo ops, pair style, computes and fix; not its Python binding or plugin entry
  file(GLOB NNP_SOURCES "${NNP_DIR}/pair_nnp/*.cpp")
  list(FILTER NNP_SOURCES EXCLUDE REGEX "/(bindings|plugin)\\.cpp$")
  # torch's headers and libraries straight from the wheel of NNP_PYTHON, not libtorch's CMake config (whose
  # variables clash with LAMMPS's own, e.g. MKL_INCLUDE_DIR of LAMMPS's FFT search)
  execute_process(COMMAND "${NNP_PYTHON}" -c
    "import os, torch; from torch.utils.cpp_extension import include_paths; print(';'.join([torch.__version__.split('+')[0], str(int(torch._C._GLIBCXX_USE_CXX11_ABI)), os.path.join(os.path.dirname(torch.__file__), 'lib'), *include_paths()]))"
    OUTPUT_VARIABLE torch_info OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE status ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "nnp: cannot import torch with NNP_PYTHON=${NNP_PYTHON}:\n${err}")
  endif()
  list(POP_FRONT torch_info Torch_VERSION torch_abi torch_lib)
  nnp_require_torch(${Torch_VERSION} ${NNP_TORCH_TESTED_MIN})
  # std::string crosses the LAMMPS/torch boundary: LAMMPS is compiled here with this compiler's default ABI
  include(CheckCXXSourceCompiles)
  check_cxx_source_compiles("#include <string>\n#if _GLIBCXX_USE_CXX11_ABI != ${torch_abi}\n#error\n#endif\nint main() {}"
                            NNP_SAME_CXX11_ABI)
  if(NOT NNP_SAME_CXX11_ABI)
    message(FATAL_ERROR "nnp: torch ${Torch_VERSION} uses _GLIBCXX_USE_CXX11_ABI=${torch_abi}, this compiler does not")
  endif()
  # torch's headers need C++17; LAMMPS before 2023 compiles as C++11 (every LAMMPS file that registers styles
  # includes nnp's headers)
  get_target_property(lammps_std lammps CXX_STANDARD)
  if(NOT lammps_std OR lammps_std LESS 17)
    set_target_properties(lammps lmp PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  endif()
  # smallbig only; LAMMPS before 2022 (e.g. Debian 12's 29 Sep 2021) gets the older calls of lammps_compat.h
  nnp_lammps_defines("${LAMMPS_SOURCE_DIR}" "${LAMMPS_SIZES}" nnp_defines)
  target_compile_definitions(lammps PRIVATE ${nnp_defines})
  message(STATUS "nnp: compile definitions for this LAMMPS: ${nnp_defines}")
  target_sources(lammps PRIVATE ${NNP_SOURCES})
  target_include_directories(lammps PRIVATE "${NNP_DIR}/pair_nnp")
  target_compile_definitions(lammps PRIVATE NNP_SOURCE_MODELS_DIR="${NNP_DIR}/python/nnp/pretrained")
  target_include_directories(lammps SYSTEM PRIVATE ${torch_info})
  foreach(name c10 torch_cpu torch c10_cuda torch_cuda)  # --no-as-needed: loading torch_cuda registers its kernels
    if(EXISTS "${torch_lib}/lib${name}.so")
      target_link_libraries(lammps PUBLIC "-Wl,--no-as-needed,${torch_lib}/lib${name}.so" "-Wl,--as-needed")
    endif()
  endforeach()
  set_target_properties(lmp PROPERTIES BUILD_RPATH "${torch_lib}" INSTALL_RPATH "${torch_lib}")
  message(STATUS "nnp: pair_style nnp built into LAMMPS with torch ${Torch_VERSION} (${NNP_DIR})")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL nnp_add_to_lammps)
