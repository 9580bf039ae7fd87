#pragma once
// Every thread GpuBridge starts names itself "gb-<role>[-<n>]" (scheduler workers gb-worker-0...,
// a batcher's dispatcher gb-b:<kernel>, the CPU backend's pool gb-cpu-0..., ...), so that top -H,
// perf, gdb and /proc/<pid>/task/<tid>/comm tell them apart. Linux keeps 15 characters: longer
// names are cut there. Best effort: where threads cannot be named, nothing happens.
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace gpubridge {

void name_this_thread(std::string_view name) noexcept;
// Names another (running) thread.
void name_started_thread(std::thread& thread, std::string_view name) noexcept;
// The calling thread's name ("" where threads have none).
std::string this_thread_name();

// Starts a thread named `name` that runs `body`: named by the starting thread before this returns
// (so that it carries its name even if it has not run yet), and by itself first thing. Throws what
// std::thread throws.
template <class F>
std::thread named_thread(std::string name, F&& body) {
  std::thread thread([name, body = std::forward<F>(body)]() mutable {
    name_this_thread(name);
    body();
  });
  name_started_thread(thread, name);
  return thread;
}

}  // namespace gpubridge
