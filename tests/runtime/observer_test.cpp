// ObserverSet: a publisher grain notifies observer grains (one-way calls, or awaited) and plain
// callbacks; unsubscribed observers get nothing more.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <semaphore>
#include <string>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

std::counting_semaphore<64> g_delivered{0};

class Listener : public Grain {
 public:
  Task<void> on_news(const std::string& item) {
    seen_.push_back(item);
    g_delivered.release();
    co_return;
  }
  Task<std::vector<std::string>> seen() { co_return seen_; }

 private:
  std::vector<std::string> seen_;
};

class Publisher : public Grain {
 public:
  Task<std::uint64_t> follow(std::int64_t listener) {
    co_return news_.subscribe<&Listener::on_news>(get_grain<Listener>(listener));
  }
  Task<bool> unfollow(std::int64_t listener) { co_return news_.unsubscribe(get_grain<Listener>(listener)); }
  Task<void> watch_locally() {
    news_.subscribe([this](const std::string& item) { local_.push_back(item); });
    co_return;
  }
  Task<std::size_t> publish(std::string item) { co_return news_.notify(item); }
  Task<void> publish_and_wait(std::string item) { co_await news_.notify_and_wait(std::move(item)); }
  Task<std::vector<std::string>> local() { co_return local_; }
  Task<std::size_t> observers() { co_return news_.size(); }

 private:
  ObserverSet<std::string> news_;
  std::vector<std::string> local_;
};

class ObserverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    while (g_delivered.try_acquire()) {
    }
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_TRUE(rt_->register_grain<Listener>().ok());
    ASSERT_TRUE(rt_->register_grain<Publisher>().ok());
  }
  std::vector<std::string> seen(int listener) {
    return rt_->run(rt_->get<Listener>(listener).call<&Listener::seen>());
  }
  std::unique_ptr<Runtime> rt_;
};

TEST_F(ObserverTest, GrainObserversAndCallbacksReceiveEvents) {
  auto pub = rt_->get<Publisher>("news");
  const auto a = rt_->run(pub.call<&Publisher::follow>(1));
  EXPECT_EQ(rt_->run(pub.call<&Publisher::follow>(1)), a) << "subscribing twice keeps one subscription";
  rt_->run(pub.call<&Publisher::follow>(2));
  rt_->run(pub.call<&Publisher::watch_locally>());
  EXPECT_EQ(rt_->run(pub.call<&Publisher::observers>()), 3u);

  rt_->run(pub.call<&Publisher::publish_and_wait>(std::string("first")));
  EXPECT_EQ(seen(1), std::vector<std::string>{"first"});
  EXPECT_EQ(seen(2), std::vector<std::string>{"first"});
  EXPECT_EQ(rt_->run(pub.call<&Publisher::local>()), std::vector<std::string>{"first"});

  EXPECT_EQ(rt_->run(pub.call<&Publisher::publish>(std::string("second"))), 3u);  // one-way to grains
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(g_delivered.try_acquire_for(30s));  // 2 + 2 deliveries
  EXPECT_EQ(seen(1), (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(seen(2), (std::vector<std::string>{"first", "second"}));
}

TEST_F(ObserverTest, UnsubscribedObserverGetsNothingMore) {
  auto pub = rt_->get<Publisher>("weather");
  rt_->run(pub.call<&Publisher::follow>(5));
  rt_->run(pub.call<&Publisher::follow>(6));
  EXPECT_TRUE(rt_->run(pub.call<&Publisher::unfollow>(5)));
  EXPECT_FALSE(rt_->run(pub.call<&Publisher::unfollow>(5)));
  rt_->run(pub.call<&Publisher::publish_and_wait>(std::string("rain")));
  EXPECT_TRUE(seen(5).empty());
  EXPECT_EQ(seen(6), std::vector<std::string>{"rain"});
}

}  // namespace
}  // namespace gpubridge::runtime
