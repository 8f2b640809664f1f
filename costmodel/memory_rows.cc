#include "costmodel/memory_rows.h"

namespace zp {

const char* to_string(Component c) {
  switch (c) {
    case Component::Weights: return "weights";
    case Component::Gradients: return "gradients";
    case Component::MainGradients: return "main_gradients";
    case Component::MasterWeights: return "master_weights";
    case Component::OptimizerStates: return "optimizer_states";
    case Component::Activations: return "activations";
    case Component::RecomputeWorkspace: return "recompute_workspace";
    case Component::Logits: return "logits";
    case Component::Zero3Gathered: return "zero3_gathered";
    case Component::Buckets: return "buckets";
    case Component::OffloadStaging: return "offload_staging";
    case Component::Workspace: return "workspace";
    case Component::BackendScratch: return "backend_scratch";
    case Component::CudaContext: return "cuda_context";
    case Component::CublasWorkspace: return "cublas_workspace";
    case Component::NcclBuffers: return "nccl_buffers";
    case Component::Fragmentation: return "fragmentation";
    case Component::kCount: break;
  }
  return "?";
}

const char* to_string(Residence r) {
  switch (r) {
    case Residence::Gpu: return "gpu";
    case Residence::Host: return "host";
    case Residence::Nvme: return "nvme";
  }
  return "?";
}

const char* to_string(Dtype d) {
  switch (d) {
    case Dtype::Bf16: return "bf16";
    case Dtype::Fp16: return "fp16";
    case Dtype::Fp32: return "fp32";
    case Dtype::Int64: return "int64";
    case Dtype::Int32: return "int32";
    case Dtype::Uint8: return "uint8";
    case Dtype::Bytes: return "bytes";
  }
  return "?";
}

bool is_runtime_overhead(Component c) { return c >= Component::CudaContext; }

bool is_model_state(Component c) {
  return c == Component::Weights || c == Component::Gradients || c == Component::MainGradients ||
         c == Component::MasterWeights || c == Component::OptimizerStates;
}

}  // namespace zp
