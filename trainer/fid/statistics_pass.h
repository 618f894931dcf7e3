// One pass over an image source: every rank runs its shard (images r, r + W, ...) through the Inception network,
// batch by batch, and the activation statistics are combined across ranks. Rank 0 shows the progress.
#pragma once
#include <cstdint>

#include "distributed/mpi_context.h"
#include "trainer/fid/fid_statistics.h"
#include "trainer/fid/image_source.h"
#include "trainer/fid/inception.h"
#include "trainer/monitoring/progress.h"

namespace ddpm {

struct StatisticsPassOptions {
  int64_t batch_size = 200;  // images per network call on each rank
  int64_t max_images = 0;    // the first max_images of the source; 0: all
  ProgressMode progress = ProgressMode::kAuto;
};

// Collective: the statistics of the source's images, the same on every rank (and, up to float64 rounding, the
// same for any number of ranks). A stop request (StopSignal) ends it within one batch on the rank that got it; every
// rank then throws StopRequested together. Throws std::runtime_error for fewer than 2 images.
FidStatistics compute_fid_statistics(const ImageSource& source, InceptionNetwork& network, const MpiContext& mpi,
                                     const StatisticsPassOptions& options);

}  // namespace ddpm
