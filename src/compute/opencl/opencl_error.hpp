#pragma once
// The one place that configures opencl.hpp for GpuBridge and converts OpenCL status codes
// (cl_int) into readable names and gpubridge::Error.
//
// opencl.hpp is used with error codes, never exceptions: every wrapper call returns or fills a
// cl_int that the caller checks. Minimum OpenCL 1.1 and target 1.2: higher settings do not
// compile with Debian 12's headers, and 2.0 queries are issued through the C API by number.
#define CL_HPP_MINIMUM_OPENCL_VERSION 110
#define CL_HPP_TARGET_OPENCL_VERSION 120
#if defined(CL_HPP_ENABLE_EXCEPTIONS)
#error "GpuBridge uses opencl.hpp with error codes; CL_HPP_ENABLE_EXCEPTIONS must not be defined"
#endif
#include <CL/opencl.hpp>

#include <string>
#include <string_view>

#include "gpubridge/core/error.hpp"

namespace gpubridge::compute::opencl {

// "CL_MEM_OBJECT_ALLOCATION_FAILURE (-4)"; unknown codes read "CL_UNKNOWN_ERROR (<code>)".
std::string cl_error_name(cl_int code);

// True for the codes that mean the device or host ran out of memory or resources.
bool is_cl_resource_error(cl_int code) noexcept;

// Error for a failed API call (`call` names it, e.g. "clCreateBuffer"): resource_exhausted for
// allocation failures (CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_RESOURCES,
// CL_OUT_OF_HOST_MEMORY), internal otherwise. Message: "<call>: <name>".
Error cl_call_error(cl_int code, std::string_view call);

// Error for a command whose event finished with a negative execution status: always internal,
// since the device failed while running it (the same codes then mean a device fault).
Error cl_device_error(cl_int status, std::string_view command);

}  // namespace gpubridge::compute::opencl
