"""Keeps a training process's freed memory for reuse instead of handing it back to the kernel at every free.

glibc serves blocks above its mmap threshold with fresh mappings and trims freed heap tops, so every update of
a large batch (an image batch of 256: ~28,000 minor page faults and ~75 ms of kernel time per update here) pays
again to fault in zeroed pages for buffers it freed a moment before. Raising the thresholds once makes later
updates reuse those pages (0 faults per update; results/image_update_2026-12-03.md).
"""

import ctypes
import ctypes.util

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks above it are still mapped and unmapped each time.
TRIM_THRESHOLD = (1 << 31) - 1
TOP_PAD = 256 << 20


def keep_freed_memory() -> bool:
  """Sets the thresholds for this process; False (and nothing changed) where the C library has no mallopt."""
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError, TypeError):
    return False
  settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
  return all(mallopt(param, value) == 1 for param, value in settings)
