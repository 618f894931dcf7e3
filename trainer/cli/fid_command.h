// `ddpm fid`: the Inception statistics of an image set saved as .npz, or the FID between two sets, each given as a
// statistics file or as images (an .npz of samples, a folder, or the data set of a config).
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "distributed/mpi_context.h"

namespace ddpm {

struct FidArgs {
  std::vector<std::string> inputs;  // statistics .npz, image .npz or image folders
  std::string inception;            // TorchScript feature network (launch/fid/export_inception.py)
  std::string output;               // the statistics of the one image source, as .npz
  std::string json;                 // the FID as JSON
  std::string config;               // a run config: its data set is the first input
  std::vector<std::string> overrides;
  std::string split = "train";
  std::string device = "auto";
  std::string progress = "auto";
  int64_t batch_size = 200;
  int64_t num_images = 0;  // the first N images of each image source; 0: all
};

CLI::App* add_fid_command(CLI::App& app, FidArgs& args);

// Collective under mpirun: the images are split across ranks, rank 0 prints and writes. Throws std::runtime_error
// naming the file (and the key) for bad input, before anything is written.
int run_fid(const FidArgs& args, const MpiContext& mpi);

}  // namespace ddpm
