/*
 * koe5's MKL dispatch shim (see koe5/mkl.py).
 *
 * Intel MKL, which PyTorch links statically into libtorch_cpu, chooses its kernels by CPU vendor before
 * instruction set: on AMD processors it runs its AVX2 code even where the chip has AVX-512 (Zen 4 and 5),
 * about half the matrix rate the hardware has. MKL asks this function whether the CPU is Intel's.
 * libtorch_cpu exports it and calls it through its symbol table, so a definition loaded into the global
 * symbol scope before PyTorch takes precedence, and MKL then dispatches on the instruction sets the CPU
 * reports (cpuid), like it does on Intel chips. Nothing else is changed.
 *
 * Plain C with no Python API: koe5 loads it with ctypes, it is never imported as a module.
 */
int mkl_serv_intel_cpu_true(void) { return 1; }
