// interop_eps CONFIG CHECKPOINT PREFIX INPUTS OUTPUT: ddpm's model output for given inputs, the ddpm side of the
// diffusers parity test (diffusers_test.sh). INPUTS is a safetensors file of x (F32 [B, C, H, W]) and t (I64 [B]);
// the weights are the checkpoint's tensors PREFIX/<parameter> (model, ema_<rate>); OUTPUT gets a safetensors file of
// `eps` (the plain forward, UNetImpl::forward) and `eps_inference` (UNetInference, the sampler's CPU path), F32.
// Exit 0 when written, 2 on a usage or input error (printed).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/config/builders.h"
#include "trainer/config/config.h"
#include "trainer/model/state_dict.h"
#include "trainer/model/unet.h"
#include "trainer/model/unet_inference.h"

namespace {

torch::Tensor tensor_of(const ddpm::SafetensorsFile& file, const std::string& name, const std::string& dtype,
                        torch::ScalarType type) {
  const ddpm::SafetensorsTensor* entry = file.find(name);
  if (entry == nullptr || entry->dtype != dtype) {
    throw std::runtime_error(file.path + ": needs a " + dtype + " tensor '" + name + "'");
  }
  torch::Tensor out = torch::empty(entry->shape, torch::TensorOptions().dtype(type));
  std::memcpy(out.data_ptr(), file.data(*entry), entry->end - entry->begin);
  return out;
}

ddpm::SafetensorsInput entry_of(const std::string& name, const torch::Tensor& value) {
  const torch::Tensor v = value.to(torch::kFloat32).contiguous();
  return {name, "F32", v.sizes().vec(), std::string(static_cast<const char*>(v.data_ptr()), v.numel() * sizeof(float))};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: interop_eps CONFIG CHECKPOINT PREFIX INPUTS OUTPUT\n");
    return 2;
  }
  try {
    const ddpm::Config config = ddpm::load_config(argv[1]);
    const ddpm::Checkpoint checkpoint = ddpm::read_checkpoint(argv[2]);
    ddpm::UNet model(ddpm::unet_options(config));
    for (auto& item : model->named_parameters()) {
      ddpm::load_state_tensor(checkpoint.tensors, std::string(argv[3]) + "/" + item.key(), item.value());
    }
    model->eval();
    const ddpm::SafetensorsFile inputs = ddpm::read_safetensors(argv[4]);
    const torch::Tensor x = tensor_of(inputs, "x", "F32", torch::kFloat32);
    const torch::Tensor t = tensor_of(inputs, "t", "I64", torch::kLong);
    torch::NoGradGuard no_grad;
    const torch::Tensor eps = model->forward(x, t);
    const torch::Tensor fast =
        ddpm::UNetInference::supported(torch::kCPU) ? ddpm::UNetInference(model).forward(x, t) : eps;  // no oneDNN: the plain one
    std::ofstream out(argv[5], std::ios::binary);
    out << ddpm::encode_safetensors({entry_of("eps", eps), entry_of("eps_inference", fast)});
    out.close();
    if (!out) throw std::runtime_error(std::string("cannot write ") + argv[5]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "interop_eps: %s\n", e.what());
    return 2;
  }
  return 0;
}
