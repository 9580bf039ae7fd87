# gpubridge_samples_cpu: CPU implementations of the sample algorithms (vector, matrix, image,
# graph); public API in include/gpubridge/samples/algorithms.hpp. Included from
# src/samples/CMakeLists.txt.
pkg_check_modules(GPUBRIDGE_OPENBLAS REQUIRED IMPORTED_TARGET GLOBAL openblas)  # GLOBAL: bench_samples calls OpenBLAS too

add_library(gpubridge_samples_cpu STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cpu/parallel.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu/vector_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu/matrix_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu/image_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu/graph_ops.cpp)
target_include_directories(gpubridge_samples_cpu
  PUBLIC ${PROJECT_SOURCE_DIR}/include
  PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cpu)
target_link_libraries(gpubridge_samples_cpu
  PUBLIC gpubridge_core Threads::Threads
  PRIVATE PkgConfig::GPUBRIDGE_OPENBLAS gpubridge_warnings)
