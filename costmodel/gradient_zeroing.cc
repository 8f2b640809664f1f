#include "costmodel/gradient_zeroing.h"

namespace zp {

GradientZeroing gradient_zeroing(const Layout& l, double params, double units, double held_params, double grad_bytes) {
  GradientZeroing z;
  if (l.framework != Framework::Zeroplan || params <= 0) return z;
  if (l.zero_stage <= 1) {
    z.step_device_bytes = params * grad_bytes;
    z.step_device_launches = 1;
    return z;
  }
  const double mb = static_cast<double>(l.num_microbatches());
  const double partition = params / static_cast<double>(l.dp);
  // The partition: fp32 on the host under optimizer offload (the host
  // optimizer adds into it), the working dtype on the device otherwise.
  if (l.offload_optimizer != Offload::None) {
    z.step_host_bytes = partition * 4;
  } else {
    z.step_device_bytes = partition * grad_bytes;
    z.step_device_launches = 1;
  }
  const double held_units = held_params > 0 ? 1 : 0;
  z.backward_device_bytes = (mb * (params - held_params) + held_params) * grad_bytes;
  z.backward_device_launches = mb * (units - held_units) + held_units;
  return z;
}

}  // namespace zp
