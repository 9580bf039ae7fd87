# Tests of the CPU sample algorithms (gpubridge_samples_cpu) against hand-checked cases and the
# library references stored in tests/samples/data (scripts/samples/make_references.py).
find_package(ZLIB REQUIRED)  # the test's own minimal PNG decoder
gpubridge_test(samples_algorithms_test LABEL unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/algorithms_test.cpp)
target_link_libraries(samples_algorithms_test PRIVATE gpubridge_samples_cpu ZLIB::ZLIB)
target_compile_definitions(samples_algorithms_test PRIVATE
  GPUBRIDGE_SAMPLES_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/samples/data"
  GPUBRIDGE_SHARED_DATA_DIR="${PROJECT_SOURCE_DIR}/../shared/data")
