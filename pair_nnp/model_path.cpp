#include "model_path.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "backend.h"
#include "contract.h"

namespace nnp {

namespace {

// a regular file that can be opened (a directory of the same name is not a model)
bool readable(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && std::ifstream(path).good();
}

std::string library_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&model_search_path), &info) == 0 || info.dli_fname == nullptr) return "";
  const std::string file = info.dli_fname;
  const auto slash = file.rfind('/');
  return slash == std::string::npos ? "." : file.substr(0, slash);
}

}  // namespace

std::vector<std::string> model_search_path() {
  std::vector<std::string> dirs;
  if (const char *env = std::getenv("NNP_MODEL_PATH")) {
    std::stringstream entries(env);
    for (std::string dir; std::getline(entries, dir, ':');)
      if (!dir.empty()) dirs.push_back(dir);
  }
  const std::string here = library_dir();
  if (!here.empty()) dirs.push_back(here + "/pretrained");
#ifdef NNP_SOURCE_MODELS_DIR
  dirs.push_back(NNP_SOURCE_MODELS_DIR);
#endif
  return dirs;
}

std::string resolve_model_path(const std::string &name_or_path) {
  if (readable(name_or_path)) return name_or_path;
  if (name_or_path.find('/') != std::string::npos)
    throw Error("model file " + name_or_path + " does not exist or cannot be read");
  std::string looked;
  for (const auto &dir : model_search_path())
    for (const char *suffix : {"", contract::MODEL_SUFFIX, contract::PT2_SUFFIX}) {
      const std::string candidate = dir + "/" + name_or_path + suffix;
      if (readable(candidate)) return candidate;
      looked += "\n  " + candidate;
    }
  throw Error("model '" + name_or_path + "' is neither a file nor a bundled model; looked for" + looked +
              "\n(`nnp models list` shows the bundled models; NNP_MODEL_PATH adds directories)");
}

}  // namespace nnp
