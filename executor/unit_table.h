// UnitTable: a model's parameter units (the embedding, each layer, the final
// norm and output layer) and where each one is now: in the model's own flat
// params and grads, or wherever a UnitProvider (ZeRO-3) put it. The models
// reach every weight through it, so one forward/backward serves both.
#pragma once

#include <cstddef>
#include <vector>

#include "executor/param_units.h"

namespace zp {

template <class T>
struct UnitTable {
  std::vector<size_t> offset, size;  // per unit, in the flat buffers (size 0: not held by this rank)
  std::vector<const T*> p;           // each unit's parameters while acquired
  std::vector<T*> g;                 // each unit's gradient buffer while open
  UnitProvider<T>* provider = nullptr;

  // `next` (>= 0) names the unit needed after this one, for the provider to fetch ahead.
  void acquire(int unit, int next, T* flat_params) {
    const auto u = static_cast<size_t>(unit);
    p[u] = provider ? provider->acquire(unit) : flat_params + offset[u];
    if (provider && next >= 0) provider->prefetch(next);
  }
  void release(int unit) {
    if (provider) provider->release(unit);
    p[static_cast<size_t>(unit)] = nullptr;
  }
  void open_gradients(int unit, T* flat_grads) {
    const auto u = static_cast<size_t>(unit);
    g[u] = provider ? provider->gradients(unit) : flat_grads + offset[u];
  }
  void finish_gradients(int unit) {
    if (provider) provider->finished(unit);
    g[static_cast<size_t>(unit)] = nullptr;
  }
};

}  // namespace zp
