// The CUDA runtime as the rest of mnemo sees it: how many GPUs are visible, and if none, why.
//
// This header includes no CUDA header on purpose: train/ (the `mnemo version` report) and the
// test runners include it, and they are compiled by the host compiler without the toolkit's
// include path. Everything CUDA-specific stays in cuda/*.cpp.
//
// The device query runs once per process (on first use) and is cached: the set of visible
// devices cannot change while a process runs. On a machine without a GPU or without a driver,
// cudaGetDeviceCount fails; that is reported here as a count of 0 plus the runtime's message,
// never as an exception, so callers can print it and carry on (tests skip, `mnemo version`
// says "no GPU visible").
#pragma once

#include <string>

namespace mnemo::cuda {

// Number of CUDA devices this process can use (0 when none is visible or no driver is loaded).
int device_count();

// Why no device is visible: "cudaGetDeviceCount: <cudaGetErrorString>" when the query failed,
// "cudaGetDeviceCount: 0 devices" when it succeeded with none; "" when a device is visible.
std::string no_device_reason();

// One line about the visible devices, e.g. "1 GPU: NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB);
// runtime 13.0, driver 13.0", or "no GPU visible: <cudaGetErrorString>".
std::string describe_devices();

}  // namespace mnemo::cuda
