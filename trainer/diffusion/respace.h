// Respacing (Nichol & Dhariwal 2021, §4; improved-diffusion's respace.py): a diffusion over a subset S of the T
// steps, whose kept ᾱ define new betas, β_i = 1 − ᾱ_{s_i} / ᾱ_{s_{i−1}}. It is a valid diffusion of its own (its
// bound is a bound too), so a model trained on T steps samples and is evaluated with |S| steps, each kept step
// feeding the model its original timestep.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/diffusion/diffusion.h"

namespace ddpm {

// The kept timestep indices (sorted, distinct, in [0, T)), as improved-diffusion's space_timesteps:
//   ""          every step (no respacing);
//   "250"       one section: 250 steps evenly strided over all T, fractional stride rounded half-to-even;
//   "10,10,30"  T split into 3 near-equal sections (the first T mod 3 one step longer), strided 10, 10 and 30;
//   "ddim50"    the integer stride k for which range(0, T, k) has exactly 50 steps (DDIM's uniform skip, t = 1 kept).
// Throws std::invalid_argument naming the spec when it cannot be met (more steps than a section holds, no integer
// stride, a count below 1, anything that is not a number).
std::vector<int64_t> space_timesteps(int64_t num_timesteps, const std::string& spec);

// `base` restricted to `kept`: β from the kept ᾱ as above, the same model variance, and the timestep map kept[i]
// (composed with base's own map) for the model's time input. `kept` as space_timesteps returns it.
GaussianDiffusion respace(const GaussianDiffusion& base, const std::vector<int64_t>& kept);

// respace(base, space_timesteps(base.num_timesteps(), spec)); base itself for an empty spec.
GaussianDiffusion respace(const GaussianDiffusion& base, const std::string& spec);

}  // namespace ddpm
