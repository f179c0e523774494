// Explicit instantiation of the CPU ops for float (training) and double (gradient tests).
#pragma once
#define LRA_INSTANTIATE(MACRO) \
  MACRO(float)                 \
  MACRO(double)
