// safetensors_diff A B TOL: compares two safetensors files tensor by tensor (same names,
// shapes and dtypes) and prints the largest absolute difference; exits 0 when it is <= TOL,
// 1 when larger, 2 on a structural mismatch or a bad file. Used by the data-parallel tests
// (mpirun -np 2 against one process).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"
#include "train/io/safetensors.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: safetensors_diff A.safetensors B.safetensors TOLERANCE\n");
    return 2;
  }
  try {
    const auto a = mnemo::io::load_safetensors(argv[1]);
    const auto b = mnemo::io::load_safetensors(argv[2]);
    const double tolerance = std::stod(argv[3]);
    MNEMO_CHECK(a.size() == b.size(), "{} has {} tensors, {} has {}", argv[1], a.size(), argv[2],
                b.size());
    double worst = 0;
    std::string worst_name;
    for (size_t i = 0; i < a.size(); ++i) {
      MNEMO_CHECK(a[i].first == b[i].first && a[i].second.shape() == b[i].second.shape() &&
                      a[i].second.dtype() == b[i].second.dtype(),
                  "tensor {} differs in name, shape or dtype ('{}' vs '{}')", i, a[i].first,
                  b[i].first);
      const auto x = a[i].second.to_vector<double>();
      const auto y = b[i].second.to_vector<double>();
      for (size_t k = 0; k < x.size(); ++k) {
        const double d = std::abs(x[k] - y[k]);
        if (!(d <= worst)) {  // also catches NaN
          worst = d;
          worst_name = a[i].first;
        }
      }
    }
    std::printf("max_abs_diff %.3g (%s), tolerance %.3g\n", worst, worst_name.c_str(), tolerance);
    return worst <= tolerance ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetensors_diff: %s\n", e.what());
    return 2;
  }
}
