// Importance sampling of the timestep (train.timestep_sampler: loss_second_moment; Nichol & Dhariwal 2021, §3.3 and
// eq. 17; improved-diffusion's LossSecondMomentResampler): p_t ∝ √E[L_t²] over the last kHistory losses of each t,
// mixed with the uniform distribution (weight kUniformMix), and uniform until every t holds kHistory losses. Each
// example's loss is weighted by 1 / (T·p_t), so the weighted mean estimates the uniform-t objective without bias.
//
// Its state is two tensors on the device, updated there in place: no host sync, nothing a captured CUDA graph
// could not replay. Every rank feeds it the same losses in the same order (every rank's, ordered by data set
// index: trainer/loop/train_step.cpp), so every rank holds the same state, and N ranks update it as one rank with N
// times the batch would.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace ddpm {

class LossSecondMomentSampler {
 public:
  static constexpr int64_t kHistory = 10;     // losses remembered per t
  static constexpr double kUniformMix = 0.001;  // the uniform distribution's share of p

  LossSecondMomentSampler(int64_t num_timesteps, const torch::Device& device);

  int64_t num_timesteps() const { return num_timesteps_; }
  // bool 0-d on the device: every t holds kHistory losses.
  torch::Tensor warm() const;
  // float64 [T] on the device: p_t = (1 − kUniformMix)·√E[L_t²] / Σ_s √E[L_s²] + kUniformMix / T once warm, else 1/T.
  torch::Tensor probabilities() const;

  struct Draw {
    torch::Tensor t;        // int64 [B]
    torch::Tensor weights;  // float64 [B]: 1 / (T·p_t)
  };
  // t = F⁻¹(u), the inverse CDF of p at u ∈ [0, 1) (float64 [B]). Until warm, `uniform_t` (the uniform sampler's
  // draw from the same u, floor(u·T)) with weight 1: a run trains exactly as under `uniform` until then.
  Draw draw(const torch::Tensor& u, const torch::Tensor& uniform_t) const;

  // Appends loss j (float64 [M]) to the history of t_j (int64 [M]) for j = 0, 1, ... in order, keeping each t's
  // last kHistory, as the reference's loop does one by one. Entries with t outside [0, T) are ignored (padding).
  // `skip` (bool 0-d, optional): when true the state stays as it was (a step skipped for a non-finite loss).
  void update(const torch::Tensor& t, const torch::Tensor& losses, const torch::Tensor& skip = {});

  // The state, for checkpoints and the replica check (restored in place with copy_).
  torch::Tensor& history() { return history_; }  // float64 [T, kHistory], each row oldest first
  torch::Tensor& counts() { return counts_; }    // int64 [T], losses held per t
  const torch::Tensor& history() const { return history_; }
  const torch::Tensor& counts() const { return counts_; }

 private:
  int64_t num_timesteps_;
  torch::Tensor history_, counts_;
};

}  // namespace ddpm
