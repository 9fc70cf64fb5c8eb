// Where a model named in an input deck lives: a path as given, or a bundled/installed model by name.
#ifndef NNP_MODEL_PATH_H
#define NNP_MODEL_PATH_H

#include <string>
#include <vector>

namespace nnp {

// Directories searched for models given by name, in order: each entry of $NNP_MODEL_PATH (':'-separated),
// pretrained/ beside libnnp_core (an installed wheel), and the source tree's python/nnp/pretrained
// (an editable install).
std::vector<std::string> model_search_path();

// `name_or_path` itself when it is an existing file; otherwise, for a bare name (no '/'), the first
// <dir>/<name>, <dir>/<name>.nnp.pt, <dir>/<name>.nnp.pt2 on the search path, e.g. organic-xtb ->
// .../organic-xtb.nnp.pt and organic-xtb-f32.nnp.pt2 -> .../organic-xtb-f32.nnp.pt2.
// Throws Error naming every place it looked when neither exists.
std::string resolve_model_path(const std::string &name_or_path);

}  // namespace nnp

#endif
