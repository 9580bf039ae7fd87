#pragma once
// Every thread GpuBridge starts names itself "gb-<role>[-<n>]" (scheduler workers gb-worker-0...,
// a batcher's dispatcher gb-b:<kernel>, the CPU backend's pool gb-cpu-0..., ...), so that top -H,
// perf, gdb and /proc/<pid>/task/<tid>/comm tell them apart. Linux keeps 15 characters: longer
// names are cut there. Best effort: where threads cannot be named, nothing happens.
#include <string>
#include <string_view>

namespace gpubridge {

void name_this_thread(std::string_view name) noexcept;
// The calling thread's name ("" where threads have none).
std::string this_thread_name();

}  // namespace gpubridge
