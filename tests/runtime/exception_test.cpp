// Exceptions thrown in a grain reach the caller unchanged (type, message, ErrorCode and context),
// whether thrown before or after the grain's first co_await and through grain-to-grain chains;
// misuse (unregistered grain type, unbound reference) fails with a typed error.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

struct QuotaError : std::runtime_error {
  explicit QuotaError(int n) : std::runtime_error("quota"), left(n) {}
  int left;
};

class Thrower : public Grain {
 public:
  Task<int> runtime_error() {
    throw std::runtime_error("plain failure in " + id().to_string());
    co_return 0;
  }
  Task<int> project_error() {
    throw ErrorException(Error(ErrorCode::not_found, "no such tensor", "load"));
    co_return 0;
  }
  Task<void> after_await() {
    co_await self<Thrower>().call<&Thrower::nothing>();
    throw QuotaError(3);
  }
  Task<void> nothing() { co_return; }
};

class Middle : public Grain {
 public:
  Task<int> forward() { co_return co_await get_grain<Thrower>(2).call<&Thrower::project_error>(); }
};

class Unregistered : public Grain {
 public:
  Task<int> f() { co_return 1; }
};

class ExceptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_TRUE(rt_->register_grain<Thrower>({.reentrant = true}).ok());
    ASSERT_TRUE(rt_->register_grain<Middle>().ok());
  }
  std::unique_ptr<Runtime> rt_;
};

TEST_F(ExceptionTest, StdExceptionKeepsTypeAndMessage) {
  try {
    rt_->run(rt_->get<Thrower>(1).call<&Thrower::runtime_error>());
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "plain failure in Thrower/1");
  }
}

TEST_F(ExceptionTest, ErrorExceptionKeepsCodeMessageAndContext) {
  try {
    rt_->run(rt_->get<Thrower>(1).call<&Thrower::project_error>());
    FAIL() << "no exception";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::not_found);
    EXPECT_EQ(e.error().message(), "no such tensor");
    EXPECT_EQ(e.error().context(), "load");
  }
}

TEST_F(ExceptionTest, ThrownAfterAnAwaitAndCustomType) {
  try {
    rt_->run(rt_->get<Thrower>(1).call<&Thrower::after_await>());
    FAIL() << "no exception";
  } catch (const QuotaError& e) {
    EXPECT_EQ(e.left, 3);
  }
}

TEST_F(ExceptionTest, PropagatesThroughAGrainChain) {
  try {
    rt_->run(rt_->get<Middle>(1).call<&Middle::forward>());
    FAIL() << "no exception";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::not_found);
  }
}

TEST_F(ExceptionTest, CallerInsideACoroutineCatchesIt) {
  auto ref = rt_->get<Thrower>(4);
  auto caller = [&]() -> Task<std::string> {
    try {
      co_await ref.call<&Thrower::runtime_error>();
    } catch (const std::exception& e) {
      co_return e.what();
    }
    co_return "";
  };
  EXPECT_EQ(rt_->run(caller()), "plain failure in Thrower/4");
}

TEST_F(ExceptionTest, UnregisteredTypeIsNotFound) {
  try {
    rt_->run(rt_->get<Unregistered>(1).call<&Unregistered::f>());
    FAIL() << "no exception";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::not_found);
    EXPECT_EQ(e.error().message(), "grain type 'Unregistered' is not registered");
  }
  EXPECT_EQ(rt_->activation_count(), 0u);
}

TEST_F(ExceptionTest, UnboundReferenceIsAPreconditionFailure) {
  GrainRef<Thrower> none;
  EXPECT_FALSE(none);
  try {
    rt_->run(none.call<&Thrower::nothing>());
    FAIL() << "no exception";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::failed_precondition);
  }
}

namespace other {
class Thrower : public Grain {  // same class name as the registered one, different class
 public:
  Task<int> f() { co_return 1; }
};
}  // namespace other

TEST_F(ExceptionTest, SameNameDifferentClassIsRefusedNotMiscast) {
  try {
    rt_->run(rt_->get<other::Thrower>(1).call<&other::Thrower::f>());
    FAIL() << "no exception";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::invalid_argument);
    EXPECT_NE(e.error().message().find("another C++ class"), std::string::npos) << e.error().message();
  }
  EXPECT_EQ(rt_->activation_count(), 0u);
}

TEST_F(ExceptionTest, RegisteringTwiceIsAlreadyExists) {
  const Status again = rt_->register_grain<Thrower>();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::already_exists);
  const Status clash = rt_->register_grain<Unregistered>({.type_name = "Thrower"});
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.error().code(), ErrorCode::already_exists);
}

}  // namespace
}  // namespace gpubridge::runtime
