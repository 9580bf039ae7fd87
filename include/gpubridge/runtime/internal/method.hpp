#pragma once
// Compile-time description of grain methods: traits of a member-function pointer, its name, the
// turn coroutine that invokes it, and its MethodInfo (one static object per method).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "gpubridge/runtime/internal/names.hpp"
#include "gpubridge/runtime/internal/turn.hpp"
#include "gpubridge/runtime/messaging/message.hpp"
#include "gpubridge/runtime/serialization/codec.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

// A list of grain methods, for the in-class declarations described in grain.hpp:
//   using always_interleave = Methods<&Counter::get>;
//   using remote_methods = Methods<&Counter::add, &Counter::get>;
template <auto... M>
struct Methods {};

namespace internal {

template <typename T>
struct is_task : std::false_type {};
template <typename T>
struct is_task<Task<T>> : std::true_type {
  using value_type = T;
};

template <typename F>
struct MethodTraits {
  static constexpr bool valid = false;
};

#define GPUBRIDGE_METHOD_TRAITS(CV, NOEXCEPT)                                \
  template <typename R, typename G, typename... P>                           \
  struct MethodTraits<R (G::*)(P...) CV NOEXCEPT> {                          \
    static constexpr bool valid = is_task<R>::value;                         \
    using grain_type = G;                                                    \
    using task_type = R;                                                     \
    using params = std::tuple<P...>;                                         \
    using arguments = std::tuple<std::remove_cvref_t<P>...>;                 \
    static constexpr std::size_t arity = sizeof...(P);                       \
    static constexpr bool no_lvalue_refs =                                   \
        ((!std::is_lvalue_reference_v<P> || std::is_const_v<std::remove_reference_t<P>>) && ...); \
  };
GPUBRIDGE_METHOD_TRAITS(, )
GPUBRIDGE_METHOD_TRAITS(const, )
GPUBRIDGE_METHOD_TRAITS(, noexcept)
GPUBRIDGE_METHOD_TRAITS(const, noexcept)
#undef GPUBRIDGE_METHOD_TRAITS

template <auto M>
using traits_of = MethodTraits<decltype(M)>;
template <auto M>
using result_of = typename is_task<typename traits_of<M>::task_type>::value_type;

template <auto A, auto B>
inline constexpr bool same_member = false;
template <auto A>
inline constexpr bool same_member<A, A> = true;

template <auto M, typename List>
struct in_list : std::false_type {};
template <auto M, auto... Ms>
struct in_list<M, Methods<Ms...>> : std::bool_constant<(same_member<M, Ms> || ...)> {};

template <auto M, typename G>
constexpr bool declared_always_interleave() {
  if constexpr (requires { typename G::always_interleave; }) {
    return in_list<M, typename G::always_interleave>::value;
  } else {
    return false;
  }
}

template <auto M, typename G>
constexpr bool declared_remote() {
  if constexpr (requires { typename G::remote_methods; }) {
    return in_list<M, typename G::remote_methods>::value;
  } else {
    return false;
  }
}

// Holds the value a call returns, in the caller's frame.
template <typename R>
struct ResultSlot {
  std::optional<R> value;
};
template <>
struct ResultSlot<void> {};

template <typename Traits, std::size_t I>
using param_t = std::tuple_element_t<I, typename Traits::params>;

template <auto M, typename G, typename Args, std::size_t... I>
auto invoke_method(G& grain, Args& args, std::index_sequence<I...>) {
  using Traits = traits_of<M>;
  return (grain.*M)(static_cast<param_t<Traits, I>&&>(std::get<I>(args))...);
}

// The turn of one call of M: filters around the method, outcome stored in the message.
template <auto M>
TurnTask method_turn(Grain& grain, Message& m) {
  using Traits = traits_of<M>;
  using G = typename Traits::grain_type;
  using R = result_of<M>;
  auto& args = *static_cast<typename Traits::arguments*>(m.arguments);
  CallScope scope(m);
  if (scope.before()) {
    try {
      auto& self = static_cast<G&>(grain);
      if constexpr (std::is_void_v<R>) {
        co_await invoke_method<M>(self, args, std::make_index_sequence<Traits::arity>{});
      } else {
        static_cast<ResultSlot<R>*>(m.result)->value.emplace(
            co_await invoke_method<M>(self, args, std::make_index_sequence<Traits::arity>{}));
      }
    } catch (...) {
      m.error = std::current_exception();
    }
    scope.after();
  }
}

template <auto M>
consteval MethodInfo make_method_info() {
  using Traits = traits_of<M>;
  using G = typename Traits::grain_type;
  using R = result_of<M>;
  using Args = typename Traits::arguments;
  MethodInfo info;
  info.name = method_name<M>();
  info.arity = Traits::arity;
  info.always_interleave = declared_always_interleave<M, G>();
  info.remote_capable = declared_remote<M, G>();
  info.start = [](Grain& g, Message& m) { return method_turn<M>(g, m).handle; };
  if constexpr (declared_remote<M, G>()) {
    info.encode_arguments = [](const void* a, std::string& out) { encode_tuple(*static_cast<const Args*>(a), out); };
    info.decode_arguments = [](std::string_view in, void* a) { return decode_tuple(in, *static_cast<Args*>(a)); };
    if constexpr (!std::is_void_v<R>) {
      info.encode_result = [](const void* r, std::string& out) {
        Codec<R>::encode(*static_cast<const ResultSlot<R>*>(r)->value, out);
      };
      info.decode_result = [](std::string_view in, void* r) -> Status {
        auto v = Codec<R>::decode(in);
        if (!v.ok()) return v.error();
        static_cast<ResultSlot<R>*>(r)->value.emplace(std::move(v).value());
        return Status();
      };
    }
  }
  return info;
}

template <typename T>
constexpr bool codec_ok = std::is_void_v<T> || HasCodec<T>;

template <typename Tuple>
struct all_have_codecs;
template <typename... T>
struct all_have_codecs<std::tuple<T...>> : std::bool_constant<(HasCodec<T> && ...)> {};

// Compile-time checks every method used through a GrainRef must pass.
template <auto M>
constexpr bool check_method() {
  using Traits = traits_of<M>;
  static_assert(Traits::valid, "a grain method must be a member function returning Task<T>");
  if constexpr (Traits::valid) {
    static_assert(Traits::no_lvalue_refs, "grain method parameters must be values or const references");
    if constexpr (declared_remote<M, typename Traits::grain_type>()) {
      static_assert(all_have_codecs<typename Traits::arguments>::value,
                    "a remote-capable grain method takes an argument type without a Codec<T>");
      static_assert(codec_ok<result_of<M>>, "a remote-capable grain method returns a type without a Codec<T>");
    }
  }
  return true;
}

template <auto M>
inline constexpr MethodInfo method_info = make_method_info<M>();

template <typename G, auto... Ms>
constexpr bool check_methods(Methods<Ms...>*) {
  return (check_method<Ms>() && ...);
}

}  // namespace internal
}  // namespace gpubridge::runtime
