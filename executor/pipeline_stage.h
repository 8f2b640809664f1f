// The part of a model one pipeline stage holds: layers [first_layer,
// first_layer + layers), the embedding on the first stage, the final norm and
// the output layer on the last. The default is the whole model.
#pragma once

namespace zp {

struct PipelineStage {
  int first_layer = 0, layers = -1;  // -1: every layer from first_layer on
  bool first = true, last = true;
};

}  // namespace zp
