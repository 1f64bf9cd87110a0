#include "train/lib/build_info.h"

#include "mnemo_build_info.h"

namespace mnemo {

std::string version() { return MNEMO_VERSION; }

}  // namespace mnemo
