// UnitProvider: how a model reaches its parameters and gradient buffers unit
// by unit (the embedding, each transformer layer, the final norm and output
// layer) when it does not hold them whole. ZeRO-3 (executor/zero_units.h) gathers
// a unit's parameters on acquire() and frees them on release(); backward
// accumulates a unit's gradients into gradients(unit) and calls
// finished(unit) when no more will come, where ZeRO-3 reduce-scatters them
// into the rank's partition. Without a provider a model uses its own flat
// params and grads.
#pragma once

namespace zp {

template <class T>
class UnitProvider {
 public:
  virtual ~UnitProvider() = default;
  // Parameters of `unit`, valid until release(unit).
  virtual const T* acquire(int unit) = 0;
  // A hint: `unit` comes next (ZeRO-3 gathers it ahead, as DeepSpeed's
  // prefetch does, so the current and the next unit are held together).
  virtual void prefetch(int unit) { (void)unit; }
  virtual void release(int unit) = 0;
  // Zeroed the first time it is asked for in a backward pass.
  virtual T* gradients(int unit) = 0;
  virtual void finished(int unit) = 0;
};

}  // namespace zp
