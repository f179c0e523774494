// LRA_HD marks maths shared by the CPU code and CUDA kernels, so the main (CPU) test suite
// exercises the same expressions the GPU runs.
#pragma once
#if defined(__CUDACC__)
#define LRA_HD __host__ __device__ __forceinline__
#else
#define LRA_HD inline
#endif
