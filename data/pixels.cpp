#include "data/pixels.h"

namespace ddpm {

torch::Tensor pixels_to_model_range(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.scalar_type() == torch::kUInt8, "pixels_to_model_range expects uint8 pixels, got ",
              pixels.scalar_type());
  return pixels.to(torch::kFloat32).div_(127.5).sub_(1.0);
}

torch::Tensor model_range_to_pixels(const torch::Tensor& x) {
  return ((x.to(torch::kFloat32) + 1.0) * 127.5).round_().clamp_(0.0, 255.0).to(torch::kUInt8);
}

}  // namespace ddpm
