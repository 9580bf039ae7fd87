// Must NOT compile: a remote-capable grain method takes a type that has no Codec. The build
// test runtime_remote_method_without_codec expects the compiler to reject it with the message
// of the static_assert in internal/method.hpp.
#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::runtime {

struct Opaque {
  int x = 0;
};

class Remote : public Grain {
 public:
  Task<int> take(Opaque o) { co_return o.x; }
  using remote_methods = Methods<&Remote::take>;
};

void register_it(Runtime& rt) { (void)rt.register_grain<Remote>(); }

}  // namespace gpubridge::runtime
