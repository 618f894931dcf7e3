// The Inception statistics of a set of images, as pytorch-fid and guided-diffusion keep them: the mean and the
// covariance (numpy.cov, ddof 1) of the pool3 activations, in float64.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace ddpm {

struct FidStatistics {
  torch::Tensor mu;     // float64 [D], on the CPU
  torch::Tensor sigma;  // float64 [D, D], on the CPU
  int64_t count = -1;   // images behind them; -1 when unknown (a statistics file that does not store it)
  std::string source;   // where they came from (a file, a folder, a data set), for messages
};

}  // namespace ddpm
