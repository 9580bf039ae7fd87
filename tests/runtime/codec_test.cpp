// Codecs: round trips of the provided codecs, typed errors on malformed input, argument tuples,
// the encode/decode entry points of remote-capable methods, and the guarantee that in-process
// calls never serialize (a counting codec stays at zero).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {

// A user type whose codec counts its uses.
struct Counted {
  int value = 0;
};
std::atomic<int> g_encodes{0};
std::atomic<int> g_decodes{0};

template <>
struct Codec<Counted> {
  static void encode(const Counted& c, std::string& out) {
    g_encodes.fetch_add(1);
    Codec<int>::encode(c.value, out);
  }
  static Result<Counted> decode(std::string_view in) {
    g_decodes.fetch_add(1);
    auto v = Codec<int>::decode(in);
    if (!v.ok()) return v.error();
    return Counted{*v};
  }
};

namespace {

template <typename T>
T round_trip(const T& value) {
  std::string bytes;
  Codec<T>::encode(value, bytes);
  auto back = Codec<T>::decode(bytes);
  EXPECT_TRUE(back.ok()) << (back.ok() ? "" : back.error().to_string());
  return back.ok() ? *back : T{};
}

struct NoCodec {};

static_assert(HasCodec<int> && HasCodec<double> && HasCodec<bool> && HasCodec<std::uint8_t>);
static_assert(HasCodec<std::string> && HasCodec<std::vector<float>> && HasCodec<Counted>);
static_assert(!HasCodec<NoCodec> && !HasCodec<std::map<int, int>> && !HasCodec<std::vector<bool>>);

TEST(Codec, ArithmeticStringAndVectorRoundTrip) {
  EXPECT_EQ(round_trip<std::int32_t>(-123456), -123456);
  EXPECT_EQ(round_trip<std::int64_t>(std::numeric_limits<std::int64_t>::min()), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(round_trip<std::uint8_t>(255), 255);
  EXPECT_EQ(round_trip<double>(3.25), 3.25);
  EXPECT_EQ(round_trip<float>(-0.5f), -0.5f);
  EXPECT_EQ(round_trip<bool>(true), true);
  EXPECT_EQ(round_trip<bool>(false), false);
  EXPECT_EQ(round_trip<std::string>(""), "");
  EXPECT_EQ(round_trip<std::string>(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_EQ(round_trip<std::vector<int>>({1, -2, 3}), (std::vector<int>{1, -2, 3}));
  EXPECT_EQ(round_trip<std::vector<double>>({}), std::vector<double>{});
}

TEST(Codec, MalformedInputIsDataLossNotADefault) {
  auto i = Codec<std::int32_t>::decode("abc");
  ASSERT_FALSE(i.ok());
  EXPECT_EQ(i.error().code(), ErrorCode::data_loss);
  EXPECT_FALSE(Codec<bool>::decode(std::string_view("\x02", 1)).ok());
  EXPECT_FALSE(Codec<bool>::decode("").ok());
  auto v = Codec<std::vector<std::int32_t>>::decode("12345");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code(), ErrorCode::data_loss);
}

TEST(Codec, TuplesFrameEachElement) {
  std::tuple<int, std::string, std::vector<float>> in{7, "seven", {7.f, 0.5f}};
  std::string bytes;
  encode_tuple(in, bytes);
  std::tuple<int, std::string, std::vector<float>> out;
  ASSERT_TRUE(decode_tuple(bytes, out).ok());
  EXPECT_EQ(out, in);
  EXPECT_FALSE(decode_tuple(std::string_view(bytes).substr(0, bytes.size() - 1), out).ok());
  EXPECT_FALSE(decode_tuple(bytes + "x", out).ok());
}

class Account : public Grain {
 public:
  Task<Counted> deposit(Counted amount, std::string memo) {
    balance_ += amount.value;
    memo_ = std::move(memo);
    co_return Counted{balance_};
  }
  Task<int> local_only(NoCodec) { co_return balance_; }  // not remote: needs no codec
  using remote_methods = Methods<&Account::deposit>;

 private:
  int balance_ = 0;
  std::string memo_;
};

TEST(Codec, InProcessCallsNeverSerialize) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<Account>().ok());
  g_encodes = 0;
  g_decodes = 0;
  auto acct = rt->get<Account>("acct");
  for (int i = 1; i <= 100; ++i) {
    EXPECT_EQ(rt->run(acct.call<&Account::deposit>(Counted{1}, std::string("memo"))).value, i);
  }
  EXPECT_EQ(rt->run(acct.call<&Account::local_only>(NoCodec{})), 100);
  EXPECT_EQ(g_encodes.load(), 0);
  EXPECT_EQ(g_decodes.load(), 0);
}

TEST(Codec, RemoteCapableMethodsCarryTheirCodecs) {
  const MethodInfo& deposit = internal::method_info<&Account::deposit>;
  EXPECT_TRUE(deposit.remote_capable);
  EXPECT_EQ(deposit.name, "Account::deposit");
  EXPECT_EQ(deposit.arity, 2u);
  ASSERT_NE(deposit.encode_arguments, nullptr);
  const MethodInfo& local = internal::method_info<&Account::local_only>;
  EXPECT_FALSE(local.remote_capable);
  EXPECT_EQ(local.encode_arguments, nullptr);

  g_encodes = 0;
  g_decodes = 0;
  std::tuple<Counted, std::string> args{Counted{5}, "five"};
  std::string wire;
  deposit.encode_arguments(&args, wire);
  std::tuple<Counted, std::string> decoded;
  ASSERT_TRUE(deposit.decode_arguments(wire, &decoded).ok());
  EXPECT_EQ(std::get<0>(decoded).value, 5);
  EXPECT_EQ(std::get<1>(decoded), "five");

  internal::ResultSlot<Counted> result, back;
  result.value.emplace(Counted{9});
  std::string result_wire;
  deposit.encode_result(&result, result_wire);
  ASSERT_TRUE(deposit.decode_result(result_wire, &back).ok());
  EXPECT_EQ(back.value->value, 9);
  EXPECT_EQ(g_encodes.load(), 2);
  EXPECT_EQ(g_decodes.load(), 2);
}

}  // namespace
}  // namespace gpubridge::runtime
